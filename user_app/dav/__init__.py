"""WebDAV on the user app (``/dav/``, RFC 4918 class 1 and 2): WsgiDAV with a RingFS provider."""
