"""``LOG_FORMAT=json``: one JSON object per line, with the service and the request id that caused it."""

from __future__ import annotations

import json

from user_app.client import Client


def test_json_logs_carry_service_and_request_id(make_cluster):
    cluster = make_cluster(env={"LOG_FORMAT": "json"})
    with Client(cluster.url) as c:
        c.http.headers["X-Request-ID"] = "req-logging-test"
        c.put("logs/a.txt", b"hello")
    lines = cluster.apps[0].log_path.read_text().splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    committed = [e for e in events if "committed logs/a.txt" in e["msg"]]
    assert committed, lines[-20:]
    assert committed[0]["service"] == "user_app"
    assert committed[0]["request_id"] == "req-logging-test"
    assert committed[0]["level"] == "info"
