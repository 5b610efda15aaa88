"""``falweb local --workers-only``: a process that only runs jobs from the shared queue.

The shape of "one web tier, N GPU boxes": the web tier (``falweb serve`` or ``falweb local``)
takes requests, serves files and sends webhooks; each box runs this, claiming jobs from the
same PostgreSQL queue (``FALWEB_DATABASE_URL``) and writing outputs to the same object
store (``FALWEB_STORAGE_URL``). It serves no HTTP. On SIGTERM or Ctrl-C its running jobs go
back to the queue at once; after a crash (``kill -9``, a lost box) they go to another
worker when their lease runs out.
"""

import signal
import threading

from falweb.local.runtime import Runtime


def run_workers(config, workers=None, banner=print):
    """Run ``workers`` job threads (default FALWEB_LOCAL_WORKERS) until SIGTERM/SIGINT."""
    runtime = Runtime(config)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    count = int(config["FALWEB_LOCAL_WORKERS"] if workers is None else workers)
    runtime.start(count, services=False)
    queue = "PostgreSQL" if runtime.db.dialect == "postgres" else "SQLite"
    banner(f"falweb local workers: {count} on {queue} (engine: {runtime.engine.name})")
    try:
        stop.wait()
    finally:
        runtime.close()
