"""A throwaway PostgreSQL cluster and an S3 emulator, for falweb's tests and benches.

Like :mod:`falweb.testing`, for test code only. :func:`postgres_cluster` runs PostgreSQL's
own ``initdb``/``pg_ctl`` in a temporary folder, listening on a Unix socket in that folder
only (no TCP port to collide with another run); PostgreSQL refuses to run as root, so as
root the cluster runs as the ``postgres`` user. :func:`s3_server` runs moto's S3 emulator
in a child process on a free loopback port. Each raises :class:`Unavailable`, saying why,
when it cannot start, so that a test can skip with that reason.
"""

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import uuid

__all__ = ["Unavailable", "fresh_database", "postgres_cluster", "s3_server"]


class Unavailable(RuntimeError):
    """The service cannot be started here; the message says why."""


def _pg_bin():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    if initdb:
        return os.path.dirname(initdb)
    raise Unavailable("PostgreSQL's initdb was not found (Debian: apt-get install postgresql)")


class Cluster:
    def __init__(self, socket_dir, user):
        self.socket_dir = socket_dir
        self.user = user
        self.shared_created = False

    def url(self, database="postgres"):
        return f"postgresql://{self.user}@/{database}?host={self.socket_dir}"


@contextlib.contextmanager
def postgres_cluster():
    """A running PostgreSQL cluster (``.url(database)``), removed on exit."""
    bindir = _pg_bin()
    run_as = []
    user = pwd.getpwuid(os.getuid()).pw_name
    if os.getuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise Unavailable("running as root and there is no 'postgres' user to run "
                              "PostgreSQL as") from None
        runuser = shutil.which("runuser")
        if runuser is None:
            raise Unavailable("running as root without runuser to drop to 'postgres'")
        run_as = [runuser, "-u", "postgres", "--"]
        user = "postgres"
    root = tempfile.mkdtemp(prefix="falweb-pg-")
    if run_as:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    data = os.path.join(root, "data")
    log = os.path.join(root, "server.log")

    def run(*args):
        return subprocess.run([*run_as, *args], capture_output=True, text=True, timeout=120,
                              cwd=root)

    started = False
    try:
        done = run(os.path.join(bindir, "initdb"), "-D", data, "-U", user, "--auth=trust",
                   "--no-sync", "-E", "UTF8", "--locale=C")
        if done.returncode:
            raise Unavailable(f"initdb failed: {done.stderr.strip()[-300:]}")
        # Only a socket in our own folder; durability is not the point of a throwaway one.
        options = (f"-c listen_addresses='' -k {root} -c fsync=off -c synchronous_commit=off"
                   " -c full_page_writes=off -c max_connections=300")
        done = run(os.path.join(bindir, "pg_ctl"), "-D", data, "-l", log, "-w", "-t", "60",
                   "-o", options, "start")
        if done.returncode:
            tail = open(log).read()[-300:] if os.path.exists(log) else done.stderr
            raise Unavailable(f"pg_ctl start failed: {tail.strip()}")
        started = True
        yield Cluster(root, user)
    finally:
        if started:
            run(os.path.join(bindir, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def fresh_database(cluster):
    """The URL of a new empty database in ``cluster``: a new schema of one shared database,
    first on the connection's ``search_path`` (a schema costs a millisecond, a CREATE
    DATABASE most of a second). Notifications and advisory locks are shared by the whole
    database: another test's can only wake a listener for nothing."""
    import psycopg

    if not cluster.shared_created:
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = 'falweb_tests'"
                            ).fetchone() is None:
                conn.execute("CREATE DATABASE falweb_tests")
        cluster.shared_created = True
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(cluster.url("falweb_tests"), autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    return cluster.url("falweb_tests") + f"&options=-csearch_path%3D{name}"


_MOTO = """
import logging, sys, warnings
warnings.simplefilter("ignore")
logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()  # until the parent closes it (or goes away)
server.stop()
"""


class S3Server:
    def __init__(self, endpoint):
        self.endpoint = endpoint
        # moto takes any credentials; these are what the tests pass to falweb.
        self.environ = {"AWS_ACCESS_KEY_ID": "falweb-test-key-id",
                        "AWS_SECRET_ACCESS_KEY": "falweb-test-secret-key-0123456789",
                        "AWS_DEFAULT_REGION": "us-east-1"}

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.environ["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.environ["AWS_SECRET_ACCESS_KEY"])

    def bucket(self):
        """A new empty bucket's name."""
        name = f"falweb-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name


@contextlib.contextmanager
def s3_server():
    """moto's S3 emulator on a free loopback port (``.endpoint``, ``.bucket()``)."""
    try:
        import moto.server  # noqa: F401
    except ImportError:
        raise Unavailable("moto[server] is not installed (pip install 'falweb[test]')") \
            from None
    child = subprocess.Popen([sys.executable, "-c", _MOTO], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline().strip()
        if not line.isdigit():
            raise Unavailable("moto's S3 server did not start")
        yield S3Server(f"http://127.0.0.1:{line}")
    finally:
        with contextlib.suppress(OSError):
            child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        child.stdout.close()
