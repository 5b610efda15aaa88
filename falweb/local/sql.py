"""The runtime's SQL where SQLite and PostgreSQL differ, side by side, and the choice of one.

Most statements are the same in both and stay where they are used (``queue``, ``delivery``,
``storage``), written with ``?`` placeholders; :mod:`falweb.store.postgres` runs them on
PostgreSQL as they are. What differs is here, each PostgreSQL statement beside what SQLite
does instead:

- the schema: SQLite's is :data:`falweb.local.db.SCHEMA`; PostgreSQL's is
  :data:`POSTGRES_SCHEMA` below, one list of migration steps (append, never edit a step);
- claims: SQLite's one write lock lets a worker read the next job and take it in one
  ``BEGIN IMMEDIATE`` transaction; on PostgreSQL many hosts claim at once, so a claim is one
  ``UPDATE`` of the row a ``FOR UPDATE SKIP LOCKED`` sub-select picked: two workers never
  wait on, nor take, the same job (and two hosts never send the same webhook);
- notifications: PostgreSQL triggers ``NOTIFY`` when a job changes, a log line is added or
  a webhook is due, which wakes status streams and idle workers on every host (SQLite's
  processes poll the file instead).
"""

import os

from falweb.store import settings as store_settings

#: Channels the triggers of :data:`POSTGRES_SCHEMA` notify on.
JOB_CHANNEL = "falweb_job"  # payload: the request id whose status or logs changed
NEW_JOB_CHANNEL = "falweb_job_new"  # a job was submitted (wakes idle workers)
DELIVERY_CHANNEL = "falweb_delivery"  # a webhook was queued

POSTGRES_SCHEMA = [
    # 1: the tables of falweb.local.db.SCHEMA, in PostgreSQL's types.
    """
    CREATE TABLE IF NOT EXISTS jobs (
        seq BIGSERIAL PRIMARY KEY,
        request_id TEXT NOT NULL UNIQUE,
        endpoint_id TEXT NOT NULL,
        app_base TEXT NOT NULL,
        input TEXT NOT NULL,
        base_url TEXT NOT NULL,
        priority INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL DEFAULT 'IN_QUEUE',
        webhook_url TEXT,
        headers TEXT NOT NULL DEFAULT '{}',
        created_at DOUBLE PRECISION NOT NULL,
        started_at DOUBLE PRECISION,
        finished_at DOUBLE PRECISION,
        lease_owner TEXT,
        lease_expires DOUBLE PRECISION,
        attempts INTEGER NOT NULL DEFAULT 0,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        result TEXT,
        result_status INTEGER,
        error TEXT,
        error_type TEXT,
        metrics TEXT,
        start_deadline DOUBLE PRECISION,
        webhook_trusted INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX IF NOT EXISTS jobs_waiting ON jobs (status, priority, seq);
    CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (status, finished_at);
    CREATE INDEX IF NOT EXISTS jobs_app_waiting ON jobs (app_base, status, priority, seq);
    CREATE TABLE IF NOT EXISTS logs (
        request_id TEXT NOT NULL,
        n INTEGER NOT NULL,
        message TEXT NOT NULL,
        level TEXT NOT NULL,
        timestamp TEXT NOT NULL,
        PRIMARY KEY (request_id, n)
    );
    CREATE TABLE IF NOT EXISTS files (
        file_id TEXT PRIMARY KEY,
        file_name TEXT NOT NULL,
        content_type TEXT NOT NULL,
        size BIGINT,
        upload_id TEXT UNIQUE,
        multipart INTEGER NOT NULL DEFAULT 0,
        complete INTEGER NOT NULL DEFAULT 0,
        created_at DOUBLE PRECISION NOT NULL,
        -- In the object store: the file's key, and the store's own id of a multipart
        -- upload (made by the first part) until it completes.
        object_key TEXT,
        s3_upload_id TEXT
    );
    CREATE INDEX IF NOT EXISTS files_age ON files (complete, created_at);
    CREATE INDEX IF NOT EXISTS files_object ON files (object_key);
    -- Sizes of the parts of multipart uploads in the object store (a folder has files).
    CREATE TABLE IF NOT EXISTS file_parts (
        file_id TEXT NOT NULL REFERENCES files (file_id) ON DELETE CASCADE,
        n INTEGER NOT NULL,
        size BIGINT NOT NULL,
        etag TEXT NOT NULL,
        PRIMARY KEY (file_id, n)
    );
    CREATE TABLE IF NOT EXISTS usage (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        bytes BIGINT NOT NULL
    );
    INSERT INTO usage (id, bytes) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
    -- SQLite's three usage triggers as one function.
    CREATE OR REPLACE FUNCTION falweb_files_usage() RETURNS trigger AS $$
    BEGIN
        UPDATE usage SET bytes = bytes
            + CASE WHEN TG_OP = 'DELETE' THEN 0 ELSE COALESCE(NEW.size, 0) END
            - CASE WHEN TG_OP = 'INSERT' THEN 0 ELSE COALESCE(OLD.size, 0) END
        WHERE id = 1;
        RETURN NULL;
    END $$ LANGUAGE plpgsql;
    CREATE TRIGGER files_usage AFTER INSERT OR UPDATE OF size OR DELETE ON files
        FOR EACH ROW EXECUTE FUNCTION falweb_files_usage();
    CREATE TABLE IF NOT EXISTS deliveries (
        request_id TEXT PRIMARY KEY,
        webhook_url TEXT NOT NULL,
        body BYTEA NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at DOUBLE PRECISION NOT NULL,
        delivered_at DOUBLE PRECISION,
        last_error TEXT,
        trusted INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (next_at)
        WHERE delivered_at IS NULL;
    CREATE TABLE IF NOT EXISTS maintenance (
        task TEXT PRIMARY KEY,
        ran_at DOUBLE PRECISION NOT NULL
    );
    -- The token secret and webhook key, shared by every host (a folder keeps files).
    CREATE TABLE IF NOT EXISTS falweb_secrets (
        name TEXT PRIMARY KEY,
        value BYTEA NOT NULL
    );
    -- Notifications, sent when the transaction commits (never for a rolled back change).
    -- Lease renewals change only lease_expires and notify nobody.
    CREATE OR REPLACE FUNCTION falweb_job_notify() RETURNS trigger AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            PERFORM pg_notify('falweb_job_new', NEW.app_base);
        END IF;
        PERFORM pg_notify('falweb_job', NEW.request_id);
        RETURN NULL;
    END $$ LANGUAGE plpgsql;
    CREATE TRIGGER jobs_notify AFTER INSERT OR UPDATE OF status, cancel_requested ON jobs
        FOR EACH ROW EXECUTE FUNCTION falweb_job_notify();
    CREATE OR REPLACE FUNCTION falweb_log_notify() RETURNS trigger AS $$
    BEGIN
        PERFORM pg_notify('falweb_job', NEW.request_id);
        RETURN NULL;
    END $$ LANGUAGE plpgsql;
    CREATE TRIGGER logs_notify AFTER INSERT ON logs
        FOR EACH ROW EXECUTE FUNCTION falweb_log_notify();
    CREATE OR REPLACE FUNCTION falweb_delivery_notify() RETURNS trigger AS $$
    BEGIN
        PERFORM pg_notify('falweb_delivery', '');
        RETURN NULL;
    END $$ LANGUAGE plpgsql;
    CREATE TRIGGER deliveries_notify AFTER INSERT ON deliveries
        FOR EACH ROW EXECUTE FUNCTION falweb_delivery_notify();
    """,
]

# -- claims -------------------------------------------------------------------------------

#: PostgreSQL: take the next waiting job, or one whose lease ran out (its worker died), in
#: one statement. SQLite: :meth:`falweb.local.queue.JobQueue.claim` reads then updates
#: under its write lock. Parameters: now, worker, lease end, now; returns the claimed job's
#: row and ``was``, its status before the claim (IN_PROGRESS: a previous worker stopped).
POSTGRES_CLAIM_JOB = """
WITH next AS (
    SELECT seq, status FROM jobs
    WHERE status = 'IN_QUEUE' OR (status = 'IN_PROGRESS' AND lease_expires < ?)
    ORDER BY status = 'IN_PROGRESS', priority, seq
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs SET status = 'IN_PROGRESS', lease_owner = ?, lease_expires = ?,
    attempts = attempts + 1, started_at = COALESCE(started_at, ?)
FROM next WHERE jobs.seq = next.seq
RETURNING jobs.*, next.status AS was
"""

#: PostgreSQL: fail the waiting jobs whose start deadline passed, in one statement (SQLite
#: selects them, then updates each). Parameters: now, result JSON, error, error type, now.
POSTGRES_FAIL_OVERDUE = """
UPDATE jobs SET status = 'COMPLETED', finished_at = ?, result = ?, result_status = 504,
    error = ?, error_type = ?
WHERE seq IN (SELECT seq FROM jobs WHERE status = 'IN_QUEUE' AND start_deadline < ?
              FOR UPDATE SKIP LOCKED)
RETURNING request_id
"""

#: PostgreSQL: renew a lease this worker still holds and add a log line, in one round trip
#: (SQLite reads the row, then updates it and inserts the line, under its write lock). The
#: UPDATE locks the row, so log lines of one job are numbered one at a time. Parameters:
#: lease end, request id, worker, message, level, timestamp, message again (None: no line).
#: Returns the job's cancel flag; no row when the lease is no longer this worker's.
POSTGRES_HEARTBEAT = """
WITH held AS (
    UPDATE jobs SET lease_expires = ?
    WHERE request_id = ? AND lease_owner = ? AND status = 'IN_PROGRESS'
    RETURNING request_id, cancel_requested
), logged AS (
    INSERT INTO logs (request_id, n, message, level, timestamp)
    SELECT request_id, (SELECT COUNT(*) FROM logs WHERE logs.request_id = held.request_id),
           ?, ?, ?
    FROM held WHERE ?::text IS NOT NULL
)
SELECT cancel_requested FROM held
"""

#: Both: hold one due webhook for ``claim_seconds`` so that no other host sends it
#: meanwhile. SQLite reads then updates it under its write lock; PostgreSQL skips the rows
#: another host is claiming. Parameters: claimed until, max attempts, now.
POSTGRES_CLAIM_DELIVERY = """
WITH due AS (
    SELECT request_id FROM deliveries
    WHERE delivered_at IS NULL AND attempts < ? AND next_at <= ?
    ORDER BY next_at
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
UPDATE deliveries SET next_at = ? FROM due
WHERE deliveries.request_id = due.request_id
RETURNING deliveries.*
"""

#: Queue a webhook once, whoever finishes the job.
INSERT_DELIVERY = {
    "sqlite": "INSERT OR IGNORE INTO deliveries (request_id, webhook_url, body, next_at,"
              " trusted) VALUES (?, ?, ?, ?, ?)",
    "postgres": "INSERT INTO deliveries (request_id, webhook_url, body, next_at, trusted)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (request_id) DO NOTHING",
}


# -- choosing -----------------------------------------------------------------------------

def open_database(config, folder):
    """The runtime's database: PostgreSQL at ``FALWEB_DATABASE_URL`` (migrated), else SQLite
    in ``folder``. :class:`~falweb.store.settings.SettingError` naming a bad setting."""
    url = store_settings.database_url(config)
    if url is None:
        from falweb.local.db import Database

        return Database(os.path.join(folder, "runtime.sqlite3"))
    from falweb.store.postgres import PostgresDatabase

    db = PostgresDatabase(url, application_name="falweb-local")
    db.migrate("local", POSTGRES_SCHEMA)
    return db
