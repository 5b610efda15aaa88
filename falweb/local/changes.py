"""Waiting for a job to change: what wakes a status stream.

A change committed by this process's queue wakes its streams at once
(:attr:`~falweb.local.queue.JobQueue.changed`). On SQLite a stream also looks again every
``poll`` seconds (another process may have changed the file; nothing tells this one). On
PostgreSQL the runtime LISTENs (:mod:`falweb.local.sql`'s
triggers NOTIFY on every status change and log line, from whichever host made it) and calls
:meth:`Changes.notify`; a stream then sleeps until its job changes, looking again every
``poll`` seconds only as a guard against a notification lost with a connection.
"""

import contextlib
import threading

#: The key under which streams of a waiting job also watch every other job: a claim of any
#: job of the endpoint can change their queue position.
ANY_JOB = "*"


class Changes:
    def __init__(self, poll):
        self.poll = poll
        self._lock = threading.Lock()
        self._watching = {}

    @contextlib.contextmanager
    def watch(self, request_id):
        """A :class:`Watch` of ``request_id`` while the block runs."""
        watch = Watch(self, request_id)
        try:
            yield watch
        finally:
            watch.close()

    def notify(self, request_id=None):
        """``request_id`` changed (None: anything may have)."""
        with self._lock:
            if request_id is None:
                watches = [w for group in self._watching.values() for w in group]
            else:
                watches = [*self._watching.get(request_id, ()),
                           *self._watching.get(ANY_JOB, ())]
        for watch in watches:
            watch.event.set()

    def _add(self, key, watch):
        with self._lock:
            self._watching.setdefault(key, set()).add(watch)

    def _remove(self, key, watch):
        with self._lock:
            group = self._watching.get(key)
            if group is not None:
                group.discard(watch)
                if not group:
                    del self._watching[key]


class Watch:
    def __init__(self, changes, request_id):
        self.changes = changes
        self.request_id = request_id
        self.event = threading.Event()
        self._any = False
        changes._add(request_id, self)

    def wait(self, any_job=False, timeout=None):
        """Return once the job changed (with ``any_job``: once any job did), or after
        ``timeout`` (default: the poll interval). A change made before this returns is
        seen by the caller's next read: the flag is cleared before it reads."""
        if any_job != self._any:
            (self.changes._add if any_job else self.changes._remove)(ANY_JOB, self)
            self._any = any_job
        self.event.wait(self.changes.poll if timeout is None else timeout)
        self.event.clear()

    def close(self):
        self.changes._remove(self.request_id, self)
        if self._any:
            self.changes._remove(ANY_JOB, self)
