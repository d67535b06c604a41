"""The web page on the user app (``/`` and ``/web/``): log in with an access key, browse, upload,
preview, versions, trash, and for admin keys the cluster and the keys (README "Web page")."""
