"""The Python client and the ``ringfs`` CLI for the user API, the ``-r`` transfer engine, and the local
launcher ``ringfs up`` uses. No service imports this package.

* :mod:`user_app.client.client`: :class:`Client`, a small synchronous client of the user API (httpx).
* :mod:`user_app.client.transfer`: folder-tree copies in batches (``put -r`` / ``get -r``).
* :mod:`user_app.client.cli`: the ``ringfs`` commands (typer + rich).
* :mod:`user_app.client.local_cluster`: a whole cluster as local processes (``ringfs up``, tests, benchmarks).
"""

from user_app.client.client import DEFAULT_URL, Client, ClientError

__all__ = ["Client", "ClientError", "DEFAULT_URL"]
