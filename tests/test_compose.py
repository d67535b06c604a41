"""docker-compose.yml and the Dockerfile checked against the code, so they cannot drift from it.

No Docker engine is needed: the compose file is parsed with PyYAML (merge keys resolved) and compared with
the service modules and the pydantic-settings classes each service reads its environment with.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from shared.config import ChunkServerSettings, LeaderSettings, UserAppSettings

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {"leader": LeaderSettings, "chunk_server": ChunkServerSettings, "user_app": UserAppSettings}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def command(svc: dict) -> list[str]:
    cmd = svc.get("command")
    return cmd.split() if isinstance(cmd, str) else list(cmd or [])


def module_of(svc: dict) -> str | None:
    """``<pkg>`` for a ``python -m <pkg>`` service, else None (e.g. postgres)."""
    cmd = command(svc)
    if len(cmd) == 3 and cmd[0] == "python" and cmd[1] == "-m":
        return cmd[2]
    return None


def ringfs_services(services: dict) -> dict[str, dict]:
    return {name: svc for name, svc in services.items() if module_of(svc) is not None}


def environment(svc: dict) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def published_ports(svc: dict) -> list[tuple[int, int]]:
    """``(host, container)`` pairs of the short ``"host:container"`` form (or the long form)."""
    pairs = []
    for p in svc.get("ports") or []:
        if isinstance(p, dict):
            pairs.append((int(p["published"]), int(p["target"])))
        else:
            host, _, container = str(p).rpartition(":")
            pairs.append((int(host.rpartition(":")[2]), int(container.split("/")[0])))
    return pairs


def by_module(services: dict, module: str) -> dict[str, dict]:
    return {n: s for n, s in ringfs_services(services).items() if module_of(s) == module}


def leader_name_and_port(services: dict) -> tuple[str, int]:
    """The default leader (the ha profile's standby aside)."""
    leaders = {n: svc for n, svc in by_module(services, "leader").items() if not svc.get("profiles")}
    assert len(leaders) == 1, f"expected exactly one leader service outside profiles, got {sorted(leaders)}"
    (name, svc), = leaders.items()
    return name, int(environment(svc).get("PORT", LeaderSettings.model_fields["port"].default))


def test_every_service_runs_a_real_module(services):
    assert ringfs_services(services), "no `python -m <service>` services"
    for name, svc in services.items():
        module = module_of(svc)
        if module is None:
            assert "image" in svc and "build" not in svc, f"{name}: neither `python -m <pkg>` nor an image"
            continue
        assert (ROOT / module / "__main__.py").is_file(), f"{name}: no {module}/__main__.py"
        assert module in SETTINGS, f"{name}: {module} is not a RingFS service"


def test_expected_services(services):
    leaders = by_module(services, "leader")
    # one leader by default; the ha profile adds a standby on the same PostgreSQL (leader/election.py)
    assert [n for n, svc in leaders.items() if not svc.get("profiles")] == ["leader"]
    assert [(n, svc["profiles"]) for n, svc in leaders.items() if svc.get("profiles")] == [("leader_2", ["ha"])]
    assert "ha" in services["postgres"]["profiles"]
    assert sorted(by_module(services, "chunk_server")) == [f"chunk_server_{n}" for n in range(1, 6)]
    assert len(by_module(services, "user_app")) >= 1


def test_environment_variables_are_settings_fields(services):
    for name, svc in ringfs_services(services).items():
        fields = {f.upper() for f in SETTINGS[module_of(svc)].model_fields}
        unknown = set(environment(svc)) - fields
        assert not unknown, f"{name} sets {sorted(unknown)}, not fields of {SETTINGS[module_of(svc)].__name__}"


def test_environment_values_are_valid_settings(services, monkeypatch):
    """Each service's environment, as compose would pass it (interpolation left empty), loads cleanly."""
    for name, svc in ringfs_services(services).items():
        env = {k: re.sub(r"\$\{[^}]*\}", "", v) for k, v in environment(svc).items()}
        for field in SETTINGS[module_of(svc)].model_fields:
            monkeypatch.delenv(field.upper(), raising=False)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        settings = SETTINGS[module_of(svc)]()
        assert settings.port == int(env["PORT"]), name


def test_only_user_apps_publish_their_port(services):
    """The user API and its S3 API are what users reach; the leader and the chunk servers stay on the
    compose network."""
    seen: set[int] = set()
    for name, svc in ringfs_services(services).items():
        env = environment(svc)
        assert "PORT" in env, f"{name}: set PORT explicitly"
        port = int(env["PORT"])
        pairs = published_ports(svc)
        expected = []
        if module_of(svc) == "user_app":
            assert "S3_PORT" in env, f"{name}: set S3_PORT explicitly"
            expected = [(port, port), (int(env["S3_PORT"]), int(env["S3_PORT"]))]
        assert pairs == expected, f"{name}: publishes {pairs}, expected {expected} (listens on {port})"
        assert port not in seen, f"{name}: port {port} used twice"
        seen.add(port)


def test_every_service_needs_the_cluster_secret(services):
    for name, svc in ringfs_services(services).items():
        value = environment(svc).get("CLUSTER_SECRET", "")
        assert value.startswith("${RINGFS_CLUSTER_SECRET:?"), f"{name}: CLUSTER_SECRET must be required, got {value!r}"
    for leader in by_module(services, "leader").values():
        leader_env = environment(leader)
        assert leader_env["ROOT_ACCESS_KEY"].startswith("${RINGFS_ROOT_ACCESS_KEY:?")
        assert leader_env["ROOT_SECRET_KEY"].startswith("${RINGFS_ROOT_SECRET_KEY:?")


def test_chunk_server_ports_and_advertise_urls(services):
    for n in range(1, 6):
        name = f"chunk_server_{n}"
        env = environment(services[name])
        assert int(env["PORT"]) == 8100 + n - 1
        url = urlsplit(env["ADVERTISE_URL"])
        assert (url.scheme, url.hostname, url.port) == ("http", name, int(env["PORT"])), env["ADVERTISE_URL"]
        assert url.path in ("", "/")


def test_advertise_url_hostnames_are_service_names(services):
    for name, svc in ringfs_services(services).items():
        env = environment(svc)
        if "ADVERTISE_URL" in env:
            url = urlsplit(env["ADVERTISE_URL"])
            assert url.hostname == name and url.port == int(env["PORT"]), f"{name}: {env['ADVERTISE_URL']}"
            if "container_name" in svc:
                assert svc["container_name"] == name


def test_leader_url_points_at_the_leader(services):
    leader, port = leader_name_and_port(services)
    for name, svc in ringfs_services(services).items():
        if module_of(svc) in ("chunk_server", "user_app"):
            env = environment(svc)
            assert "LEADER_URL" in env, f"{name}: LEADER_URL missing"
            url = urlsplit(env["LEADER_URL"])
            assert (url.scheme, url.hostname, url.port) == ("http", leader, port), f"{name}: {env['LEADER_URL']}"


def test_leader_keeps_sqlite_on_a_named_volume(compose, services):
    leader, _ = leader_name_and_port(services)
    svc = services[leader]
    env = environment(svc)
    assert env["DATA_DIR"] == "/data"
    assert "leader-data:/data" in svc["volumes"]
    assert "leader-data" in compose["volumes"]


def test_chunk_servers_have_distinct_named_volumes(compose, services):
    volumes = []
    for name, svc in by_module(services, "chunk_server").items():
        data_dir = environment(svc).get("DATA_DIR", "/data")
        mounts = [v for v in svc.get("volumes") or [] if str(v).split(":")[1] == data_dir]
        assert len(mounts) == 1, f"{name}: no volume on its DATA_DIR {data_dir}"
        volume = mounts[0].split(":")[0]
        assert volume in (compose.get("volumes") or {}), f"{name}: {volume} is not a named volume"
        volumes.append(volume)
    assert len(volumes) == 5 and len(set(volumes)) == 5, volumes


def test_healthchecks_hit_healthz(services):
    for name, svc in ringfs_services(services).items():
        check = svc.get("healthcheck")
        assert check, f"{name}: no healthcheck"
        test = check["test"]
        text = test if isinstance(test, str) else " ".join(test)
        assert "/healthz" in text, f"{name}: healthcheck does not hit /healthz"
        assert svc.get("restart") == "unless-stopped", name


def test_dependents_wait_for_a_healthy_leader(services):
    leader, _ = leader_name_and_port(services)
    for name, svc in ringfs_services(services).items():
        if module_of(svc) != "leader":
            assert svc["depends_on"][leader]["condition"] == "service_healthy", name


def test_postgres_profile(services):
    pg = services["postgres"]
    assert pg["image"] == "postgres:15"
    assert "postgres" in pg["profiles"]
    env = environment(pg)
    user, password, db = env["POSTGRES_USER"], env["POSTGRES_PASSWORD"], env["POSTGRES_DB"]
    leader, _ = leader_name_and_port(services)
    database_url = environment(services[leader])["DATABASE_URL"]
    assert re.fullmatch(r"\$\{[A-Z_]+:-\}", database_url), "the leader's DATABASE_URL should be switchable"
    # The URL docs/deploy.md tells you to set matches the postgres service.
    expected = f"postgresql+asyncpg://{user}:{password}@postgres:5432/{db}"
    assert expected in (ROOT / "docs" / "deploy.md").read_text()
    assert expected in (ROOT / "docker-compose.yml").read_text()


def test_dockerfile():
    # Logical instructions: comments dropped, backslash continuations joined.
    text = "\n".join(ln for ln in (ROOT / "Dockerfile").read_text().splitlines() if not ln.strip().startswith("#"))
    lines = [" ".join(ln.split()) for ln in re.sub(r"\\\n", " ", text).splitlines() if ln.strip()]
    froms = [ln.split()[1] for ln in lines if ln.upper().startswith("FROM ")]
    assert froms and froms[-1] == "python:3.11-slim"
    users = [ln.split()[1] for ln in lines if ln.upper().startswith("USER ")]
    assert users and users[-1] not in ("root", "0", "0:0"), users
    assert any(ln.upper().startswith("HEALTHCHECK") and "/healthz" in ln for ln in lines)
    assert any(re.match(r"RUN pip install \.(\s|$)", ln) for ln in lines), "install the project as CI does"
    assert 'CMD ["python", "-m", "user_app"]' in lines
    exposed = {p for ln in lines if ln.upper().startswith("EXPOSE ") for p in ln.split()[1:]}
    for port in ("8000", "8010"):
        assert port in exposed


def test_dockerignore_keeps_local_state_out():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "data"} <= ignored
