"""Existing storage-dependent tests, run again on PostgreSQL and an S3 bucket (issue 12).

The tests imported below were written against SQLite and the instance folder, through the
``local_config`` and ``app`` fixtures only; here those fixtures name a fresh PostgreSQL
database and bucket, so the same assertions hold on the shared backends. (Tests that look
into the instance folder itself stay SQLite-only, in their own modules.)
"""

import pytest

from falweb import backend
from falweb import create_app
from falweb import history_sql
from falweb.store.testing import fresh_database


@pytest.fixture
def shared_backend(pg_cluster, s3_emulator, monkeypatch):
    for name, value in s3_emulator.environ.items():
        monkeypatch.setenv(name, value)
    return {"FALWEB_DATABASE_URL": fresh_database(pg_cluster),
            "FALWEB_STORAGE_URL": f"s3://{s3_emulator.bucket()}/reuse",
            "FALWEB_S3_ENDPOINT_URL": s3_emulator.endpoint}


@pytest.fixture
def local_config(tmp_path, shared_backend):
    return {"TESTING": True, "FALWEB_INSTANCE_PATH": str(tmp_path / "local"),
            "FALWEB_LOCAL_STEP_DELAY": 0.0, "FALWEB_LOCAL_WORKERS": 2} | shared_backend


@pytest.fixture
def app(tmp_path, shared_backend):
    app = create_app({"TESTING": True, "FALWEB_INSTANCE_PATH": str(tmp_path / "instance"),
                      "FALWEB_BACKEND": "local", "FALWEB_LOCAL_STEP_DELAY": 0.0,
                      "WTF_CSRF_ENABLED": False} | shared_backend)
    yield app
    runtime = backend.embedded_runtime(app)
    if runtime is not None:
        runtime.close()
    history_sql.database(app).close()  # its connections, not left to the end of the session


from tests.test_downloads import test_data_uri_images_are_decoded  # noqa: E402,F401
from tests.test_downloads import test_stored_image_downloads_as_an_attachment  # noqa: E402,F401
from tests.test_downloads import (  # noqa: E402,F401,I001
    test_traversal_into_the_embedded_runtimes_queue_is_refused as test_traversal_is_refused,
)
from tests.test_local_queue import *  # noqa: E402,F401,F403
from tests.test_local_storage import *  # noqa: E402,F401,F403
from tests.test_webhooks import *  # noqa: E402,F401,F403

# 1 MiB parts: an object store refuses parts under 5 MiB but the last (S3's rule);
# test_scale_backends.py joins 5 MiB parts on both backends instead.
del test_multipart_upload_round_trip  # noqa: F821
