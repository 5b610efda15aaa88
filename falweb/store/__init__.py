"""Where falweb keeps things when one machine is not enough (DESIGN §3, README "Deployment").

Neutral ground shared by the app and the local runtime, importing neither:

- :mod:`falweb.store.settings`: ``FALWEB_DATABASE_URL`` and ``FALWEB_STORAGE_URL`` read and
  checked at start, with errors that name the setting and never echo a password or key.
- :mod:`falweb.store.postgres`: a PostgreSQL database with the same small interface as the
  runtime's SQLite one (``connect()``, ``transaction()``, ``close()``), migrations under an
  advisory lock, and LISTEN/NOTIFY.
- :mod:`falweb.store.s3`: plain S3 calls (boto3) for an S3-compatible object store.

Unset, both settings keep SQLite files and folders in the instance folder: these modules
(and their optional dependencies, the ``scale`` extra) are then never imported.
"""
