"""One whole cluster over TLS (``ringfs up --tls``'s private CA, ``user_app/client/tls_setup.py``): every
service serves HTTPS only, every internal call verifies the CA, and a client that trusts it reads and
writes as usual."""

from __future__ import annotations

import ssl

import httpx
import pytest

from tests.utils.auth import ROOT, TestAuth
from tests.utils.data import random_bytes
from user_app.client import Client

pytestmark = pytest.mark.timeout(120)


def test_a_cluster_over_tls_end_to_end(make_cluster):
    cluster = make_cluster(chunk_servers=3, tls=True)
    ca = cluster.ca_file
    assert ca is not None and cluster.url.startswith("https://") and cluster.leader_url.startswith("https://")
    ring = httpx.get(cluster.leader_url + "/ring", auth=TestAuth(basic=None), verify=ssl.create_default_context(cafile=str(ca))).json()
    assert [s["state"] for s in ring["servers"]] == ["healthy"] * 3  # the leader's checks went over TLS
    assert all(s["url"].startswith("https://") for s in ring["servers"])
    data = random_bytes(300_000, seed=1)
    with Client(cluster.url, ca_file=str(ca)) as c:
        assert c.put("tls/file.bin", data)["size"] == len(data)  # user app -> leader, chunk servers over TLS
        assert c.get("tls/file.bin") == data
        assert c.fsck()["ok"]  # leader -> chunk servers over TLS
    # WebDAV with Basic over TLS, as Windows' WebClient insists on (README "WebDAV")
    with httpx.Client(base_url=cluster.url + "/dav", auth=ROOT, verify=ssl.create_default_context(cafile=str(ca)),
                      timeout=30) as dav:
        assert dav.put("/tls/dav.txt", content=b"over https").status_code == 201
        assert dav.get("/tls/dav.txt", headers={"Range": "bytes=5-"}).content == b"https"
        assert dav.request("PROPFIND", "/tls/", headers={"Depth": "1"}).status_code == 207
    # Plain HTTP to a TLS port gets nowhere, and a client that does not trust the CA refuses the server.
    plain = cluster.url.replace("https://", "http://")
    with pytest.raises(httpx.HTTPError):
        httpx.get(plain + "/healthz", timeout=5)
    with pytest.raises(httpx.ConnectError):
        httpx.get(cluster.url + "/healthz", timeout=5)
