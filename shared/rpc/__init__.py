"""The one internal RPC layer: every call between RingFS services goes through here (Garage's ``rpc/``).

* :mod:`shared.rpc.transport`: the one HTTP client (aiohttp, one keep-alive pool per process), the one
  place that puts headers on every internal request, and the one translation of failures into
  :mod:`shared.errors` types.
* :mod:`shared.rpc.chunk_client` and :mod:`shared.rpc.leader_client`: one client per kind of peer, with
  ``rpc_*`` methods that speak :mod:`shared.protocol` models.
* :mod:`shared.rpc.ring_cache`: the one cached view of the ring, for user apps and chunk servers.
* :mod:`shared.rpc.coalesce`: the one per-key coalescer that batches concurrent calls to one peer.

Client-side calls are named ``rpc_*``, server-side handlers ``handle_*``.
"""
