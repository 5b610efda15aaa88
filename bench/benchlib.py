"""What falweb's benches share: servers in their own processes, and the Node load generator.

Each bench starts what it measures (gunicorn with the README's ``gunicorn.conf.py``, Node
servers), drives it with ``bench/load.mjs`` (keep-alive connections in one Node process,
far cheaper than a Python client, so the client is not what is measured) and stops it.
"""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from falweb.testing import wait_until

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(app, env=None, pythonpath=None):
    """``gunicorn -c gunicorn.conf.py APP`` (the README's deployment) on a free loopback port;
    returns (process, base URL). Its logs go nowhere."""
    port = free_port()
    command = [str(Path(sys.executable).with_name("gunicorn")), "-c", "gunicorn.conf.py"]
    if pythonpath:
        command += ["--pythonpath", str(pythonpath)]
    proc = subprocess.Popen(
        [*command, app],
        cwd=ROOT,
        env={**os.environ, **(env or {}), "FALWEB_BIND": f"127.0.0.1:{port}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )

    def listening():
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn {app} exited with {proc.returncode}")
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True

    wait_until(listening, timeout=60, interval=0.05, ignore=OSError, message=f"gunicorn {app}")
    return proc, f"http://127.0.0.1:{port}"


def start_node(script, *args, cwd):
    """``node SCRIPT ARGS`` that prints ``listening <port>``; returns (process, base URL)."""
    proc = subprocess.Popen(
        ["node", script, *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    line = proc.stdout.readline()
    if not line.startswith("listening "):
        stop(proc)
        raise RuntimeError(f"{script} did not start")
    return proc, f"http://127.0.0.1:{line.split()[1]}"


def stop(proc):
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def worker_pids(master_pid):
    try:
        path = f"/proc/{master_pid}/task/{master_pid}/children"
        return [int(pid) for pid in Path(path).read_text().split()]
    except OSError:
        return []


def cpu_seconds(pids):
    """User + system CPU seconds used so far by ``pids`` (a vanished one counts 0)."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def memory_kib(pid, field):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def load(url, connections, seconds, headers=None, server_pids=(), warmup=0.3, **spec):
    """One run of bench/load.mjs: {"requests", "errors", "rps", "p50", "p90", "p99"}, and
    "cpu_us": CPU microseconds per request that the ``server_pids`` spent (warm-up included,
    so a slight overestimate alike for all). CPU per request hardly depends on what else
    the machine runs, unlike req/s on a shared machine. ``spec``: more of load.mjs's keys
    (method, body, count, expect)."""
    spec = {"url": url, "headers": headers or {}, "connections": connections,
            "seconds": seconds, "warmup": warmup, **spec}
    cpu_before = cpu_seconds(server_pids)
    out = subprocess.run(
        ["node", str(BENCH / "load.mjs"), json.dumps(spec)],
        capture_output=True, text=True, timeout=seconds + warmup + 60, check=True,
    )
    result = json.loads(out.stdout)
    spent = cpu_seconds(server_pids) - cpu_before
    result["cpu_us"] = spent / max(result["requests"], 1) * 1e6 * seconds / (seconds + warmup)
    return result


def goal(label, value, ratio, baseline, met):
    """One line of a bench's goals: the figure, its ratio, the same-run baseline, a verdict."""
    verdict = "met" if met else "NOT met"
    print(f"  {label:<36} {value:<16} {ratio:<32} {baseline}  [{verdict}]")
