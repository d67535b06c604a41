"""WsgiDAV's property manager over the leader (``leader/dav_properties.py``): WebDAV dead properties
live in the leader's SQL, so every user app serves the same ones and they outlive a restart.

WsgiDAV names a resource by its ref URL (``/dav/a/b``, quoted; a collection's ends in ``/``); the leader
keys by RingFS path. A request remembers what it read (``environ``), and a folder listing fetches the
properties of all its members in one call (``prefetch``), so a PROPFIND of depth 1 costs one leader call,
not one per member.
"""

from __future__ import annotations

from urllib.parse import unquote

from shared.errors import BadRequest
from shared.paths import normalize_folder

CACHE_KEY = "ringfs.dav.properties"


def path_of(ref_url: str, mount: str) -> str:
    """The RingFS path of a WsgiDAV ref URL below ``mount`` (``""`` the root)."""
    url = unquote(ref_url)
    if url.startswith(mount):
        url = url[len(mount):]
    try:
        return normalize_folder(url)
    except BadRequest:
        return url.strip("/")  # a name RingFS cannot hold has no resource, so no properties either


def _as_text(value) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else str(value)


class LeaderPropertyManager:
    """WsgiDAV's ``PropertyManager`` interface (``wsgidav.prop_man.property_manager``) on the leader.
    ``caller_of(environ)`` gives the request's :class:`user_app.dav.provider.Caller`."""

    def __init__(self, mount: str, caller_of) -> None:
        self.mount = mount
        self.caller_of = caller_of

    def __repr__(self) -> str:
        return "LeaderPropertyManager"

    # ---------------------------------------------------------------- reads
    def _cache(self, environ) -> dict[str, dict[str, str]]:
        return environ.setdefault(CACHE_KEY, {})

    def _of(self, ref_url: str, environ) -> dict[str, str]:
        path = path_of(ref_url, self.mount)
        cache = self._cache(environ)
        if path not in cache:
            answer = self._call(environ, "/properties/get", {"paths": [path]})
            cache[path] = answer["properties"].get(path, {})
        return cache[path]

    def prefetch(self, folder: str, members: list[str], environ) -> None:
        """Fetch the properties of ``folder`` and of its direct ``members`` (paths) in one call."""
        answer = self._call(environ, "/properties/get", {"paths": [folder], "children_of": folder})
        found = answer["properties"]
        cache = self._cache(environ)
        for path in [folder, *members]:
            cache[path] = found.get(path, {})

    def get_properties(self, norm_url: str, environ=None) -> list[str]:
        return list(self._of(norm_url, environ))

    def get_property(self, norm_url: str, name: str, environ=None):
        value = self._of(norm_url, environ).get(name)
        return None if value is None else value.encode("utf-8")

    # ---------------------------------------------------------------- writes
    def write_property(self, norm_url: str, name: str, property_value, dry_run=False, environ=None) -> None:
        if dry_run:
            return
        path = path_of(norm_url, self.mount)
        text = _as_text(property_value)
        self._call(environ, "/properties/patch", {"path": path, "set": {name: text}})
        self._of(norm_url, environ)[name] = text

    def remove_property(self, norm_url: str, name: str, dry_run=False, environ=None) -> None:
        if dry_run:
            return
        path = path_of(norm_url, self.mount)
        self._call(environ, "/properties/patch", {"path": path, "remove": [name]})
        self._of(norm_url, environ).pop(name, None)

    def remove_properties(self, norm_url: str, environ=None) -> None:
        path = path_of(norm_url, self.mount)
        self._call(environ, "/properties/remove", {"path": path, "below": norm_url.endswith("/")})
        self._forget(environ)

    def copy_properties(self, src_url: str, dest_url: str, environ=None) -> None:
        self._call(environ, "/properties/move", {"src": path_of(src_url, self.mount),
                                                  "dst": path_of(dest_url, self.mount), "keep_source": True})
        self._forget(environ)

    def move_properties(self, src_url: str, dest_url: str, with_children: bool, environ=None) -> None:
        self._call(environ, "/properties/move", {"src": path_of(src_url, self.mount),
                                                  "dst": path_of(dest_url, self.mount), "below": with_children})
        self._forget(environ)

    # ---------------------------------------------------------------- plumbing
    def _forget(self, environ) -> None:
        if environ is not None:
            environ.pop(CACHE_KEY, None)

    def _call(self, environ, route: str, body: dict):
        caller = self.caller_of(environ)
        return caller.run(caller.services.leader.rpc_json("POST", route, json=body))
