"""Property-based fuzzing of every operation in the OpenAPI of all three services (schemathesis), on real
processes: a leader, 3 chunk servers and a user app, each fuzzed with and without credentials.

What is checked, per service and per mode:

- with credentials (``X-RingFS-Auth`` freshly signed for every request to the leader and the chunk
  servers, HTTP Basic with the root key to the user app): no response is a 5xx, no request fails at the
  connection level (a crashed or hung service), and none is refused with 401 (which would mean the
  fuzzer did not really get past the boundary and tested nothing);
- without credentials: no response is a 5xx, and every response but ``GET /healthz`` is 401.

Each operation gets schemathesis' fuzzing phase: ``max_examples`` cases drawn from its positive and
negative strategies together (what ``st run --max-examples N`` does in that phase), one fixed Hypothesis
seed so CI runs are repeatable, no shrinking (a 5xx is recorded with its request, not raised inside
Hypothesis, so one run reports every 5xx it finds). Requests are sent as prepared by schemathesis;
redirects are not followed (a 3xx is the service's answer). The cluster credential signs each request's
path and query exactly as sent (a ``requests`` auth hook on the prepared request: a nonce is good once),
so the ``X-RingFS-Auth`` quoted with a finding is spent: to replay one, sign it afresh
(``tests.utils.auth.cluster_header(method, path_and_query)``). The CLI's other phases (schema examples,
coverage, stateful links) are not run: the schemas have no examples or links, and the coverage phase is
not bounded by ``max_examples``.

Many operations take a body their OpenAPI does not describe (packed digests, batch sections, file
contents: ``request.body()`` read by hand), so schemathesis sends them none. Each POST or PUT without a
declared ``requestBody`` is therefore fuzzed a second time, labelled ``[raw body]``: the same
schemathesis cases with ``max_examples`` raw bodies from Hypothesis (random bytes, whole 32-byte
digests, JSON values), counted apart from the schemathesis cases.

After each service the lines its run made the services log at ERROR are summarised (printed and in the
report, not asserted: a background task failing is a finding too, but not a response).

Order: every service without credentials first (changes nothing), then with credentials the user app,
then a chunk server, then the leader (whose fuzzed ``POST /servers`` and ``POST /gc/unreferenced`` can
change the cluster the others answer from).

Every 5xx is listed in the failure message with its request, the response and the lines the services
logged meanwhile (``logs/<service>.log`` under the cluster's data dir).

Environment:

- ``RINGFS_FUZZ_EXAMPLES`` (default 10): cases per operation. The bounded run of the issue is
  ``RINGFS_FUZZ_EXAMPLES=30 .venv/bin/python -m pytest tests/test_api_fuzz.py -s``.
- ``RINGFS_FUZZ_SEED`` (default 20240): the Hypothesis seed.
- ``RINGFS_FUZZ_REPORT``: a file to write the results to as JSON (counts and every 5xx in full).

``test_fuzzer_reports_server_errors`` runs the same fuzzer and the same checks against a small FastAPI
app of its own whose routes raise or answer 200 without a credential, to show both checks can fail.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import hypothesis
import pytest
import requests
import schemathesis
from fastapi import FastAPI, HTTPException, Request
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis import GenerationMode

from shared.auth.rpc_signing import HEADER
from tests.utils.auth import ROOT, basic_header, cluster_header, http

EXAMPLES = int(os.environ.get("RINGFS_FUZZ_EXAMPLES", "10"))
SEED = int(os.environ.get("RINGFS_FUZZ_SEED", "20240"))
REPORT = os.environ.get("RINGFS_FUZZ_REPORT")
REQUEST_TIMEOUT = 30.0  # seconds; a service that takes longer is reported as hung
OPEN = {("GET", "/healthz"), ("HEAD", "/healthz")}  # what answers without a credential
RAW = " [raw body]"  # label suffix of the cases with a raw body (see the module docstring)

# Bodies for the operations whose OpenAPI declares none: bytes, whole packed digests, JSON.
_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                     max_leaves=12)
RAW_BODIES = st.one_of(
    st.binary(max_size=2048),
    st.integers(0, 8).flatmap(lambda n: st.binary(min_size=32 * n, max_size=32 * n)),
    _json.map(lambda v: json.dumps(v).encode()),
)

# The per-test limit grows with the cases per operation (about 60 operations per mode in all).
pytestmark = pytest.mark.timeout(max(180, 10 * EXAMPLES))


# ---------------------------------------------------------------- the fuzzer


class Credential(requests.auth.AuthBase):
    """Signs each prepared request: ``cluster`` adds a fresh ``X-RingFS-Auth`` over the method and the
    path and query as they go on the wire (``path_url``), ``basic`` adds the root key."""

    def __init__(self, kind: str | None) -> None:
        assert kind in (None, "cluster", "basic")
        self.kind = kind

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        if self.kind == "cluster":
            r.headers[HEADER] = cluster_header(r.method, r.path_url)
        elif self.kind == "basic":
            r.headers["Authorization"] = basic_header(*ROOT)
        return r


@dataclass
class Finding:
    """One response the checks refuse (or a request that got no response), with what it takes to
    reproduce it."""

    operation: str
    status: int | str
    method: str
    url: str
    headers: dict[str, str]
    body: str
    response: str
    curl: str = ""
    log: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        lines = [f"{self.operation}: {self.status}", f"  {self.method} {self.url}"]
        lines += [f"  {k}: {v}" for k, v in self.headers.items()]
        if self.body:
            lines.append(f"  body: {self.body}")
        lines.append(f"  response: {self.response}")
        for name, text in self.log.items():
            lines.append(f"  --- {name} ---")
            lines += ["  " + line for line in text.splitlines()[-40:]]
        return "\n".join(lines)


@dataclass
class FuzzResult:
    service: str
    credentials: bool
    cases: int = 0
    seconds: float = 0.0
    statuses: Counter = field(default_factory=Counter)  # status code (or "error: ...") -> cases
    per_operation: dict[str, Counter] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)  # 5xx and failed requests
    unexpected: list[Finding] = field(default_factory=list)  # refused by the mode's rule (401 or not)
    skipped: dict[str, str] = field(default_factory=dict)  # operation -> why it could not be fuzzed
    log_errors: dict[str, Counter] = field(default_factory=dict)  # log file -> ERROR message -> times

    def summary(self) -> str:
        mode = "with credentials" if self.credentials else "without credentials"
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items(), key=lambda kv: str(kv[0])))
        operations = len([op for op in self.per_operation if not op.endswith(RAW)])
        text = (f"{self.service} {mode}: {self.cases} cases over {operations} operations in "
                f"{self.seconds:.1f} s; statuses {{{codes}}}; 5xx/failed: {len(self.findings)}")
        raw = sum(sum(c.values()) for op, c in self.per_operation.items() if op.endswith(RAW))
        if raw:
            text += f" ({self.cases - raw} schemathesis cases, {raw} with a raw body)"
        for op, why in self.skipped.items():
            text += f"\n  not fuzzed: {op}: {why}"
        for name, errors in self.log_errors.items():
            text += f"\n  {name} logged {sum(errors.values())} ERROR lines meanwhile: " + "; ".join(
                f"{n}x {msg}" for msg, n in errors.most_common(5))
        return text

    def as_json(self) -> dict:
        return {"service": self.service, "credentials": self.credentials, "cases": self.cases,
                "seconds": round(self.seconds, 1), "statuses": {str(k): v for k, v in self.statuses.items()},
                "per_operation": {op: {str(k): v for k, v in c.items()} for op, c in self.per_operation.items()},
                "findings": [f.__dict__ for f in self.findings],
                "unexpected": [f.__dict__ for f in self.unexpected[:50]], "skipped": self.skipped,
                "log_errors": {k: dict(v) for k, v in self.log_errors.items()}}


def _text(data: bytes | str | None, limit: int = 2000) -> str:
    if data is None:
        return ""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    text = data[:limit].decode("utf-8", "backslashreplace")
    return text + (f"... ({len(data)} bytes)" if len(data) > limit else "")


def _shown_headers(headers) -> dict[str, str]:
    """The request headers worth reproducing: everything but the transport's defaults."""
    skip = {"user-agent", "accept-encoding", "accept", "connection", "content-length"}
    return {k: v for k, v in headers.items() if k.lower() not in skip}


class LogWatch:
    """Offsets into the services' log files, to quote what they logged while one request ran."""

    def __init__(self, logs: list[Path]) -> None:
        self.logs = logs

    def mark(self) -> dict[Path, int]:
        return {p: p.stat().st_size if p.exists() else 0 for p in self.logs}

    def since(self, marks: dict[Path, int]) -> dict[str, str]:
        time.sleep(0.3)  # uvicorn logs a handler's traceback after it has sent the 500
        out = {}
        for p, start in marks.items():
            with open(p, "rb") as f:
                f.seek(start)
                text = f.read(200_000).decode("utf-8", "replace")
            if "Traceback" in text or "ERROR" in text or "CRITICAL" in text:
                out[p.name] = text
        return out

    def errors_since(self, marks: dict[Path, int]) -> dict[str, Counter]:
        """``file -> message -> times``: the records logged at ERROR or CRITICAL after ``marks`` (the
        message is the record's text after the logger name, with its exception's last line)."""
        out: dict[str, Counter] = {}
        for p, start in marks.items():
            with open(p, "rb") as f:
                f.seek(start)
                lines = f.read().decode("utf-8", "replace").splitlines()
            found: Counter = Counter()
            for i, line in enumerate(lines):
                if " ERROR " not in line and " CRITICAL " not in line:
                    continue
                message, exc = line.split(": ", 1)[-1][:120], ""
                for follow in lines[i + 1:i + 200]:
                    if follow[:4].isdigit():  # the next record
                        break
                    if follow and not follow.startswith((" ", "Traceback", "During handling", "The above")):
                        exc = follow  # the last such line: the exception that ended the traceback
                found[message + (f" ({exc[:120]})" if exc else "")] += 1
            if found:
                out[p.name] = found
        return out


def load_schema(base_url: str):
    """A service's OpenAPI as schemathesis sees it (fetched with credentials: it is behind the boundary)."""
    r = http.get(base_url + "/openapi.json")
    r.raise_for_status()
    return schemathesis.openapi.from_dict(r.json())


def fuzz(service: str, schema, base_url: str, credential: Credential, credentials: bool,
         logs: list[Path] = (), max_examples: int = EXAMPLES, seed: int = SEED) -> FuzzResult:
    """Every operation of ``schema``: ``max_examples`` cases each, sent to ``base_url``."""
    result = FuzzResult(service, credentials)
    watch = LogWatch(list(logs))
    start = watch.mark()
    started = time.monotonic()
    with requests.Session() as session:
        session.auth = credential
        session.trust_env = False  # loopback only: no proxy or .netrc from the environment
        for op_result in schema.get_all_operations():
            try:
                operation = op_result.ok()
            except Exception as exc:  # the schema of this operation cannot be used
                result.skipped[repr(op_result)[:80]] = f"{type(exc).__name__}: {exc}"[:500]
                continue
            label = f"{operation.method.upper()} {operation.path}"
            strategy = st.one_of([operation.as_strategy(generation_mode=mode) for mode in GenerationMode])
            passes = [(label, {"case": strategy})]
            if operation.method.upper() in ("POST", "PUT") and "requestBody" not in operation.definition.raw:
                passes.append((label + RAW, {"case": strategy, "body": RAW_BODIES}))
            for name, strategies in passes:
                counts = result.per_operation.setdefault(name, Counter())
                send = _sender(result, watch, session, base_url, name, counts, credentials, "body" in strategies)
                test = hypothesis.seed(seed)(hypothesis.settings(
                    max_examples=max_examples, deadline=None, database=None, derandomize=False,
                    phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
                    verbosity=hypothesis.Verbosity.quiet, print_blob=False,
                )(hypothesis.given(**strategies)(send)))
                try:
                    test()
                except hypothesis.errors.Unsatisfiable as exc:
                    result.skipped[name] = f"Unsatisfiable: {str(exc)[:200]}"
    result.seconds = time.monotonic() - started
    result.log_errors = watch.errors_since(start)
    return result


def _sender(result: FuzzResult, watch: LogWatch, session: requests.Session, base_url: str, label: str,
            counts: Counter, credentials: bool, raw: bool):
    """The Hypothesis test body for one operation: send the case, count and judge its response."""

    def send(case) -> None:
        send_with(case, None)

    def send_raw(case, body: bytes) -> None:
        send_with(case, body)

    def send_with(case, body: bytes | None) -> None:
        marks = watch.mark()
        extra = {} if body is None else {"data": body}
        try:
            response = case.call(base_url=base_url, session=session, allow_redirects=False,
                                 timeout=REQUEST_TIMEOUT, **extra)
        except (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL,
                UnicodeError, ValueError) as exc:
            # Never sent: the client library refuses what was generated; not the service's fault.
            key = f"not sent: {type(exc).__name__}"
            counts[key] += 1
            result.statuses[key] += 1
            return
        except requests.RequestException as exc:
            key = f"error: {type(exc).__name__}"
            counts[key] += 1
            result.statuses[key] += 1
            result.cases += 1
            req = case.as_transport_kwargs(base_url=base_url)
            result.findings.append(Finding(label, key, case.method, req["url"] + (
                f" params={req.get('params')}" if req.get("params") else ""), {},
                _text(body if body is not None else str(req.get("json", req.get("data", "")))), str(exc)[:500],
                case.as_curl_command(), watch.since(marks)))
            return
        result.cases += 1
        status = response.status_code
        counts[status] += 1
        result.statuses[status] += 1
        req = response.request
        path = req.path_url.split("?", 1)[0]
        is_open = (req.method, path) in OPEN
        bad = status >= 500
        wrong = (not credentials and not is_open and status != 401) or (credentials and status == 401)
        if bad or (wrong and len(result.unexpected) < 200):
            finding = Finding(label, status, req.method, req.url, _shown_headers(req.headers),
                              _text(req.body), _text(response.content), case.as_curl_command(),
                              watch.since(marks) if bad else {})
            (result.findings if bad else result.unexpected).append(finding)

    return send_raw if raw else send


def problems(result: FuzzResult) -> list[str]:
    """What the checks refuse in ``result``, one entry each (empty: it passes)."""
    out = [f.describe() for f in result.findings]
    if not result.credentials:
        out += [f"without credentials, not 401: {f.describe()}" for f in result.unexpected]
    else:
        out += [f"with credentials, refused: {f.describe()}" for f in result.unexpected]
    if result.cases == 0:
        out.append("no case ran")
    return out


# ---------------------------------------------------------------- the cluster

RESULTS: list[FuzzResult] = []


@pytest.fixture(scope="module")
def targets(cluster):
    """``service -> (base url, credential kind)``, on a cluster with a few files in it (the fuzzer's
    favourite names among them) and one in the trash."""
    for path, data in (("0", b"zero"), ("a/b.txt", b"hello"), ("trashed.txt", b"bye")):
        assert http.put(f"{cluster.url}/files/{path}", content=data).status_code == 201
    assert http.delete(f"{cluster.url}/files/trashed.txt").status_code in (200, 204)
    print(f"\nfuzzing a cluster in {cluster.data_dir} ({EXAMPLES} cases per operation, seed {SEED})")
    yield {"user_app": (cluster.url, "basic"), "chunk_server": (cluster.servers[0].url, "cluster"),
           "leader": (cluster.leader_url, "cluster")}
    print("\n" + "\n".join(r.summary() for r in RESULTS))
    if REPORT:
        Path(REPORT).write_text(json.dumps({"examples": EXAMPLES, "seed": SEED, "data_dir": str(cluster.data_dir),
                                            "results": [r.as_json() for r in RESULTS]}, indent=1, default=str))


CASES = [("user_app", False), ("chunk_server", False), ("leader", False),
         ("user_app", True), ("chunk_server", True), ("leader", True)]


@pytest.mark.parametrize("service,credentials", CASES,
                         ids=[f"{s}-{'credentials' if c else 'anonymous'}" for s, c in CASES])
def test_fuzz_service(cluster, targets, service, credentials):
    base_url, kind = targets[service]
    logs = sorted((Path(cluster.data_dir) / "logs").glob("*.log"))
    result = fuzz(service, load_schema(base_url), base_url, Credential(kind if credentials else None),
                  credentials, logs)
    RESULTS.append(result)
    print("\n" + result.summary())
    found = problems(result)
    assert not found, f"{len(found)} problem(s) in {result.summary()}\n\n" + "\n\n".join(found[:20])


# ---------------------------------------------------------------- the fuzzer can fail


def test_fuzzer_reports_server_errors(tmp_path):
    """The same fuzzer and checks on a tiny app of our own: one route always raises (500), one answers
    503, one answers 200 to anyone, one takes an undeclared body and raises when it gets one (found only
    by the raw-body pass). Each must be reported, with the traceback from the app's log."""
    import logging

    import uvicorn

    from user_app.client.local_cluster import free_port

    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict:
        return {"ok": True}

    @app.get("/items/{n}")
    def item(n: int) -> dict:
        raise RuntimeError(f"boom {n}")

    @app.get("/busy")
    def busy() -> dict:
        raise HTTPException(503, "busy")

    @app.get("/open")
    def open_() -> dict:
        return {"anyone": True}

    @app.post("/upload")
    async def upload(request: Request) -> dict:
        body = await request.body()
        if body:
            raise ValueError(f"cannot parse {len(body)} bytes")
        return {"empty": True}

    log = tmp_path / "boom.log"
    handler = logging.FileHandler(log)
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "the test app did not start"
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        schema = schemathesis.openapi.from_dict(app.openapi())
        result = fuzz("boom", schema, base, Credential(None), credentials=False, logs=[log], max_examples=3)
    finally:
        server.should_exit = True
        thread.join(10)
        logger.removeHandler(handler)
        handler.close()
    print("\n" + result.summary())
    by_op = {f.operation: f for f in result.findings}
    assert set(by_op) == {"GET /items/{n}", "GET /busy", "POST /upload" + RAW}, result.summary()
    assert by_op["GET /items/{n}"].status == 500 and "RuntimeError: boom" in "".join(by_op["GET /items/{n}"].log.values())
    assert by_op["GET /busy"].status == 503
    assert by_op["POST /upload" + RAW].status == 500 and by_op["POST /upload" + RAW].body
    assert "ValueError: cannot parse" in "".join(by_op["POST /upload" + RAW].log.values())
    assert all(f.status >= 500 for f in result.findings)
    answered = {f.operation for f in result.unexpected if f.status == 200}  # to a request without a credential
    assert "GET /open" in answered and answered <= {"GET /open", "POST /upload", "POST /upload" + RAW}
    found = problems(result)
    assert any("500" in p for p in found) and any("not 401" in p and "/open" in p for p in found)
    assert not any("/healthz" in p for p in found)
