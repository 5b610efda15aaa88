"""Shared fixtures: the local runtime and the whole app, each on a real loopback port."""

import ipaddress
import socket

import pytest

from falweb import backend
from falweb import create_app
from falweb.testing import ServerThread
from falweb.testing import serve_local_runtime
from tests import browser as chromium

# Keys a test uses to prove the key never leaks; nothing real.
TEST_FAL_KEY = "test-key-id:test-key-secret-0123456789abcdef"


@pytest.fixture(autouse=True)
def key_never_logged(caplog):
    """Every test, whatever it does: no captured log line carries the test key."""
    yield
    secret = TEST_FAL_KEY.split(":", 1)[1]
    for record in caplog.get_records("call") + caplog.get_records("setup"):
        text = record.getMessage() + str(record.exc_text or "")
        assert secret not in text, f"the key leaked into a log line: {record.name}"


def _is_ip(name):
    try:
        ipaddress.ip_address(name.split("%")[0])  # an IPv6 literal may carry a %zone
    except ValueError:
        return False
    return True


@pytest.fixture
def no_dns(monkeypatch):
    """In this process, every host name but ``localhost`` fails to resolve at once (IP
    literals still work): a test about a host that cannot be resolved gets the resolver's
    answer without waiting on this machine's DNS, or reaching the network."""
    resolve = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name in (None, "", "localhost") or _is_ip(name):
            return resolve(host, *args, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, f"{name}: name not known (no_dns fixture)")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def local_config(tmp_path):
    """Config of a fast local runtime in a fresh instance folder."""
    return {
        "TESTING": True,
        "FALWEB_INSTANCE_PATH": str(tmp_path / "local"),
        "FALWEB_LOCAL_STEP_DELAY": 0.0,
        "FALWEB_LOCAL_WORKERS": 2,
    }


@pytest.fixture
def local_runtime(local_config):
    """The local runtime alone on 127.0.0.1:<free port>; ``.url`` is its base URL."""
    with serve_local_runtime(local_config) as server:
        yield server


@pytest.fixture
def no_fal_env(monkeypatch):
    """No fal key and no FALWEB_LOCAL_URL in the environment."""
    for name in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET", "FALWEB_LOCAL_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def shared_runtime(tmp_path_factory):
    """One fast local runtime shared by a module's stateless tests (a start and stop costs
    a good part of a second, which a runtime per test would pay many times over)."""
    with serve_local_runtime({"TESTING": True, "FALWEB_LOCAL_STEP_DELAY": 0.0,
                              "FALWEB_LOCAL_WORKERS": 2,
                              "FALWEB_INSTANCE_PATH": str(tmp_path_factory.mktemp("runtime"))}
                             ) as server:
        yield server


@pytest.fixture
def fal_client(shared_runtime):
    """A falweb client on :func:`shared_runtime`, polling quickly."""
    from falweb.client import FalClient
    from falweb.hosts import Hosts

    with FalClient(hosts=Hosts(shared_runtime.url), poll_interval=0.02) as client:
        yield client


@pytest.fixture
def app(tmp_path):
    """The falweb app on the embedded local runtime (no key), not listening."""
    app = create_app(
        {
            "TESTING": True,
            "FALWEB_INSTANCE_PATH": str(tmp_path / "instance"),
            "FALWEB_BACKEND": "local",
            "FALWEB_LOCAL_STEP_DELAY": 0.0,
            "WTF_CSRF_ENABLED": False,
        }
    )
    yield app
    runtime = backend.embedded_runtime(app)
    if runtime is not None:
        runtime.close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def live_server(app):
    """The whole app (embedded runtime at /local) on a real port; ``.url`` is its base URL."""
    server = ServerThread(app)
    app.config["FALWEB_SELF_URL"] = server.url
    server.app = app
    yield server
    server.shutdown()


# -- PostgreSQL and S3 (issue 12): one throwaway cluster and one S3 emulator per session ----

@pytest.fixture(scope="session")
def pg_cluster():
    """A PostgreSQL cluster for the whole session; skips, saying why, where none can start."""
    from falweb.store.testing import Unavailable
    from falweb.store.testing import postgres_cluster

    try:
        with postgres_cluster() as cluster:
            yield cluster
    except Unavailable as exc:
        pytest.skip(f"no PostgreSQL: {exc}")


@pytest.fixture(scope="session")
def s3_emulator():
    """moto's S3 server for the whole session; skips, saying why, where it cannot start."""
    from falweb.store.testing import Unavailable
    from falweb.store.testing import s3_server

    try:
        with s3_server() as server:
            yield server
    except Unavailable as exc:
        pytest.skip(f"no S3 emulator: {exc}")


@pytest.fixture(params=["sqlite", "postgres"])
def backend_config(request, local_config, monkeypatch):
    """``local_config`` on each backend: SQLite and the instance folder, then PostgreSQL
    (a fresh database) and an S3 bucket (a fresh one)."""
    if request.param == "sqlite":
        return local_config
    from falweb.store.testing import fresh_database

    cluster = request.getfixturevalue("pg_cluster")
    s3 = request.getfixturevalue("s3_emulator")
    for name, value in s3.environ.items():
        monkeypatch.setenv(name, value)
    return local_config | {"FALWEB_DATABASE_URL": fresh_database(cluster),
                           "FALWEB_STORAGE_URL": f"s3://{s3.bucket()}/runtime",
                           "FALWEB_S3_ENDPOINT_URL": s3.endpoint}


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium, one per test module (skips, saying why, when it is missing)."""
    reason = chromium.missing_reason()
    if reason:
        print(f"skipping browser tests: {reason}")
        pytest.skip(reason)
    instance = chromium.Browser()
    yield instance
    instance.quit()
