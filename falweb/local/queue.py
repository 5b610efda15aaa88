"""The queue's state and rules: submit, status, claim with a lease, progress, complete, cancel.

States are fal's three: IN_QUEUE → IN_PROGRESS → COMPLETED. A failed or cancelled job is
COMPLETED with ``error``/``error_type``, and its result answers with the error, as fal does.
A worker claims a job with a lease that its runtime renews while the job runs (at every
step, and by a heartbeat in between); a job whose lease ran out (its worker died) goes to
the next worker. Completing checks the lease, so a job completes once.
"""

import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime

from falweb.local import sql

IN_QUEUE = "IN_QUEUE"
IN_PROGRESS = "IN_PROGRESS"
COMPLETED = "COMPLETED"

PRIORITIES = {"normal": 0, "low": 1}

CANCELLED_ERROR = "Request was cancelled"
CANCELLED_ERROR_TYPE = "request_cancelled"
# x-fal-request-timeout ran out before a worker started the request (fal: 504, type "user").
START_TIMEOUT_ERROR = "Request timed out before it started"
START_TIMEOUT_ERROR_TYPE = "request_timeout"


class Interrupted(Exception):
    """The runtime is stopping: the job goes back to the queue, not to an error (raised by
    whatever runs a job: the runtime's engines, a hosted app's job runner)."""


def iso_now():
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Job:
    request_id: str
    endpoint_id: str
    app_base: str
    input: dict
    base_url: str
    status: str
    priority: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    cancel_requested: bool
    attempts: int
    webhook_url: str | None
    webhook_trusted: bool
    headers: dict
    result: dict | None
    result_status: int | None
    error: str | None
    error_type: str | None
    metrics: dict | None
    seq: int

    @classmethod
    def from_row(cls, row):
        return cls(
            request_id=row["request_id"],
            endpoint_id=row["endpoint_id"],
            app_base=row["app_base"],
            input=json.loads(row["input"]),
            base_url=row["base_url"],
            status=row["status"],
            priority=row["priority"],
            created_at=row["created_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            cancel_requested=bool(row["cancel_requested"]),
            attempts=row["attempts"],
            webhook_url=row["webhook_url"],
            webhook_trusted=bool(row["webhook_trusted"]),
            headers=json.loads(row["headers"]),
            result=json.loads(row["result"]) if row["result"] is not None else None,
            result_status=row["result_status"],
            error=row["error"],
            error_type=row["error_type"],
            metrics=json.loads(row["metrics"]) if row["metrics"] else None,
            seq=row["seq"],
        )


class JobQueue:
    """Durable jobs in SQLite. Every method is one short transaction."""

    def __init__(self, db, lease_seconds=30.0):
        self.db = db
        self.lease_seconds = lease_seconds
        self._expired = []
        #: Called with a request id after a change to its job is committed here (the
        #: runtime wakes this process's status streams at once; those of other processes
        #: look again on their own, or on PostgreSQL's NOTIFY).
        self.changed = lambda request_id: None

    def take_expired(self):
        """Ids of jobs that :meth:`claim` timed out since the last call (for webhooks)."""
        expired, self._expired = self._expired, []
        return expired

    # -- callers' side --------------------------------------------------------------------

    def submit(self, endpoint_id, app_base, input, base_url, *, priority="normal",
               webhook_url=None, webhook_trusted=False, headers=None, start_timeout=None):
        """Store a new job (committed before this returns) and give back its Job.

        ``webhook_trusted``: the webhook URL was allowed as local (see
        :class:`~falweb.local.delivery.WebhookPolicy`). ``start_timeout`` (seconds): fail
        the job if no worker has started it by then.
        """
        request_id = str(uuid.uuid4())
        now = time.time()
        deadline = now + start_timeout if start_timeout else None
        with self.db.transaction() as conn:
            # RETURNING (SQLite 3.35+, PostgreSQL): the stored row, without reading it back.
            row = conn.execute(
                "INSERT INTO jobs (request_id, endpoint_id, app_base, input, base_url, priority,"
                " webhook_url, webhook_trusted, headers, created_at, start_deadline)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
                (request_id, endpoint_id, app_base, json.dumps(input), base_url,
                 PRIORITIES.get(priority, 0), webhook_url, int(bool(webhook_trusted)),
                 json.dumps(headers or {}), now, deadline),
            ).fetchone()
        self.changed(request_id)
        return Job.from_row(row)

    def get(self, request_id):
        row = self.db.connect().execute(
            "SELECT * FROM jobs WHERE request_id = ?", (request_id,)
        ).fetchone()
        return Job.from_row(row) if row else None

    def queue_position(self, job):
        """Requests ahead of ``job`` in its endpoint's queue (0 = next), as fal counts them."""
        row = self.db.connect().execute(
            "SELECT COUNT(*) FROM jobs WHERE app_base = ? AND status = ? AND"
            " (priority < ? OR (priority = ? AND seq < ?))",
            (job.app_base, IN_QUEUE, job.priority, job.priority, job.seq),
        ).fetchone()
        return row[0]

    def logs(self, request_id, since=0):
        rows = self.db.connect().execute(
            "SELECT n, message, level, timestamp FROM logs WHERE request_id = ? AND n >= ?"
            " ORDER BY n",
            (request_id, since),
        ).fetchall()
        return [
            {"message": r["message"], "level": r["level"], "source": "USER",
             "timestamp": r["timestamp"]}
            for r in rows
        ]

    def cancel(self, request_id):
        """``"CANCELLATION_REQUESTED"``, ``"ALREADY_COMPLETED"`` or ``"NOT_FOUND"``.

        A queued job is taken out of the queue at once (COMPLETED with a cancelled error);
        a running one gets a flag its engine sees between steps.
        """
        now = time.time()
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT status FROM jobs WHERE request_id = ?" + self.db.for_update,
                (request_id,)
            ).fetchone()
            if row is None:
                return "NOT_FOUND"
            if row["status"] == COMPLETED:
                return "ALREADY_COMPLETED"
            if row["status"] == IN_QUEUE:
                conn.execute(
                    "UPDATE jobs SET status = ?, cancel_requested = 1, finished_at = ?,"
                    " result = ?, result_status = 400, error = ?, error_type = ?"
                    " WHERE request_id = ?",
                    (COMPLETED, now, json.dumps({"detail": CANCELLED_ERROR}), CANCELLED_ERROR,
                     CANCELLED_ERROR_TYPE, request_id),
                )
            else:
                conn.execute(
                    "UPDATE jobs SET cancel_requested = 1 WHERE request_id = ?", (request_id,)
                )
        self.changed(request_id)
        return "CANCELLATION_REQUESTED"

    def counts(self):
        rows = self.db.connect().execute(
            "SELECT status, COUNT(*) AS n FROM jobs GROUP BY status"
        ).fetchall()
        counts = {IN_QUEUE: 0, IN_PROGRESS: 0, COMPLETED: 0}
        counts.update({r["status"]: r["n"] for r in rows})
        return counts

    def purge(self, cutoff, batch=200, max_attempts=10):
        """Delete up to ``batch`` jobs that finished before ``cutoff`` (epoch seconds), with
        their logs and delivered (or given up) webhook; a job whose webhook is still being
        delivered stays. One short transaction; returns the number deleted."""
        keep_undelivered = (
            "NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.request_id = jobs.request_id"
            " AND d.delivered_at IS NULL AND d.attempts < ?)")
        with self.db.transaction() as conn:
            ids = [row["request_id"] for row in conn.execute(
                f"SELECT request_id FROM jobs WHERE status = ? AND finished_at < ?"
                f" AND {keep_undelivered} LIMIT ?",
                (COMPLETED, cutoff, max_attempts, batch))]
            if not ids:
                return 0
            marks = ", ".join("?" * len(ids))
            for table in ("logs", "deliveries", "jobs"):
                conn.execute(f"DELETE FROM {table} WHERE request_id IN ({marks})", ids)
        return len(ids)

    # -- workers' side --------------------------------------------------------------------

    def claim(self, worker_id):
        """Take the next waiting job (or one whose worker's lease expired); None if idle.

        Jobs whose start deadline passed are finished with a timeout error on the way; the
        caller's next :meth:`take_expired` names them.
        """
        now = time.time()
        # Idle workers poll often; look without the write lock first, take it only for work.
        waiting = self.db.connect().execute(
            "SELECT 1 FROM jobs WHERE status = ? OR (status = ? AND lease_expires < ?) LIMIT 1",
            (IN_QUEUE, IN_PROGRESS, now),
        ).fetchone()
        if waiting is None:
            return None
        if self.db.dialect == "postgres":
            return self._claim_skip_locked(worker_id, now)
        with self.db.transaction() as conn:
            overdue = conn.execute(
                "SELECT request_id FROM jobs WHERE status = ? AND start_deadline < ?",
                (IN_QUEUE, now),
            ).fetchall()
            for late in overdue:
                conn.execute(
                    "UPDATE jobs SET status = ?, finished_at = ?, result = ?, result_status = 504,"
                    " error = ?, error_type = ? WHERE request_id = ?",
                    (COMPLETED, now, json.dumps({"detail": START_TIMEOUT_ERROR,
                                                 "error_type": START_TIMEOUT_ERROR_TYPE}),
                     START_TIMEOUT_ERROR, START_TIMEOUT_ERROR_TYPE, late["request_id"]),
                )
            self._expired.extend(late["request_id"] for late in overdue)
            row = conn.execute(
                "SELECT request_id, status FROM jobs WHERE status = ?"
                " ORDER BY priority, seq LIMIT 1",
                (IN_QUEUE,),
            ).fetchone()
            if row is None:
                row = conn.execute(
                    "SELECT request_id, status FROM jobs WHERE status = ? AND lease_expires < ?"
                    " ORDER BY priority, seq LIMIT 1",
                    (IN_PROGRESS, now),
                ).fetchone()
            if row is None:
                return None
            conn.execute(
                "UPDATE jobs SET status = ?, lease_owner = ?, lease_expires = ?,"
                " attempts = attempts + 1, started_at = COALESCE(started_at, ?)"
                " WHERE request_id = ?",
                (IN_PROGRESS, worker_id, now + self.lease_seconds, now, row["request_id"]),
            )
            if row["status"] == IN_PROGRESS:
                self._append_log(conn, row["request_id"],
                                 "The previous worker stopped; running the request again.",
                                 "WARN")
        for late in overdue:
            self.changed(late["request_id"])
        self.changed(row["request_id"])
        return self.get(row["request_id"])

    def _claim_skip_locked(self, worker_id, now):
        # PostgreSQL (falweb.local.sql): many hosts claim at once, each skipping the rows
        # another is taking; one statement per step, no table-wide lock.
        with self.db.transaction() as conn:
            overdue = [row["request_id"] for row in conn.execute(
                sql.POSTGRES_FAIL_OVERDUE,
                (now, json.dumps({"detail": START_TIMEOUT_ERROR,
                                  "error_type": START_TIMEOUT_ERROR_TYPE}),
                 START_TIMEOUT_ERROR, START_TIMEOUT_ERROR_TYPE, now))]
            self._expired.extend(overdue)
            row = conn.execute(sql.POSTGRES_CLAIM_JOB,
                               (now, worker_id, now + self.lease_seconds, now)).fetchone()
            if row is None:
                return None
            if row["was"] == IN_PROGRESS:
                self._append_log(conn, row["request_id"],
                                 "The previous worker stopped; running the request again.",
                                 "WARN")
        self.changed(row["request_id"])
        return Job.from_row(row)

    def heartbeat(self, request_id, worker_id, message=None, level="INFO", earlier=()):
        """Renew the lease and add log lines: ``earlier`` ((message, level, timestamp)
        tuples held back until now), then ``message``. Returns (still ours, cancel
        requested)."""
        lines = [*earlier, *([(message, level, iso_now())] if message is not None else [])]
        if self.db.dialect == "postgres" and len(lines) <= 1:
            message, level, stamp = lines[0] if lines else (None, level, None)
            row = self.db.connect().execute(sql.POSTGRES_HEARTBEAT, (
                time.time() + self.lease_seconds, request_id, worker_id, message, level,
                stamp or iso_now(), message)).fetchone()
            if row and message is not None:
                self.changed(request_id)
            return (True, bool(row["cancel_requested"])) if row else (False, True)
        with self.db.transaction() as conn:
            row = conn.execute(
                "UPDATE jobs SET lease_expires = ?"
                " WHERE request_id = ? AND lease_owner = ? AND status = ?"
                " RETURNING cancel_requested",
                (time.time() + self.lease_seconds, request_id, worker_id, IN_PROGRESS),
            ).fetchone()
            if row is None:  # not ours any more, or over
                return False, True
            for line in lines:
                self._append_log(conn, request_id, *line)
        if lines:
            self.changed(request_id)
        return True, bool(row["cancel_requested"])

    def renew(self, held):
        """Extend the leases of ``held`` ((request_id, worker_id) pairs) that are still
        those workers' own, in one transaction; returns how many were."""
        expires = time.time() + self.lease_seconds
        renewed = 0
        with self.db.transaction() as conn:
            for request_id, worker_id in held:
                cur = conn.execute(
                    "UPDATE jobs SET lease_expires = ?"
                    " WHERE request_id = ? AND lease_owner = ? AND status = ?",
                    (expires, request_id, worker_id, IN_PROGRESS),
                )
                renewed += cur.rowcount
        return renewed

    def release(self, request_id, worker_id):
        """Put a job this worker holds back in the queue (its worker is stopping)."""
        with self.db.transaction() as conn:
            cur = conn.execute(
                "UPDATE jobs SET status = ?, lease_owner = NULL, lease_expires = NULL"
                " WHERE request_id = ? AND lease_owner = ? AND status = ?",
                (IN_QUEUE, request_id, worker_id, IN_PROGRESS),
            )
            if cur.rowcount:
                self._append_log(conn, request_id,
                                 "The runtime stopped; the request went back to the queue.",
                                 "WARN")
        self.changed(request_id)
        return cur.rowcount == 1

    def complete(self, request_id, worker_id, *, result, result_status=200, error=None,
                 error_type=None, metrics=None, logs=()):
        """Finish a job this worker holds, with its last log lines (``logs``: (message,
        level, timestamp) tuples held back until now). False if the lease was lost
        (someone else has it)."""
        with self.db.transaction() as conn:
            cur = conn.execute(
                "UPDATE jobs SET status = ?, finished_at = ?, result = ?, result_status = ?,"
                " error = ?, error_type = ?, metrics = ?, lease_owner = NULL"
                " WHERE request_id = ? AND lease_owner = ? AND status = ?",
                (COMPLETED, time.time(), json.dumps(result), result_status, error, error_type,
                 json.dumps(metrics or {}), request_id, worker_id, IN_PROGRESS),
            )
            if cur.rowcount == 1:
                for line in logs:
                    self._append_log(conn, request_id, *line)
        self.changed(request_id)
        return cur.rowcount == 1

    def _append_log(self, conn, request_id, message, level, timestamp=None):
        conn.execute(
            "INSERT INTO logs (request_id, n, message, level, timestamp) VALUES"
            " (?, (SELECT COUNT(*) FROM logs WHERE request_id = ?), ?, ?, ?)",
            (request_id, request_id, message, level, timestamp or iso_now()),
        )
