"""The runtime's storage-dependent behaviour on both backends (issue 12): SQLite and the
instance folder, and PostgreSQL and an S3 bucket. Each test runs once per backend, over
real sockets, and asserts what a client of the runtime sees."""

import base64
import hashlib
import io
import json
import os
import threading
import time

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from flask import Flask
from flask import request as flask_request
from PIL import Image

from falweb.store.testing import fresh_database
from falweb.testing import ServerThread
from falweb.testing import serve_local_runtime
from falweb.testing import wait_until
from tests.local_helpers import sse_events
from tests.local_helpers import wait_status

MiB = 1024 * 1024
I2I = "fal-ai/fast-sdxl/image-to-image"


def submit(url, input, endpoint="fal-ai/fast-sdxl", **params):
    answer = requests.post(f"{url}/queue/{endpoint}", json=input, params=params,
                           timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def png_bytes(size=(8, 8)):
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


def test_a_job_streams_its_status_and_its_image_downloads(backend_config):
    with serve_local_runtime(backend_config) as rt:
        job = submit(rt.url, {"prompt": "both", "num_inference_steps": 3})
        with requests.get(job["status_url"] + "/stream", params={"logs": 1}, stream=True,
                          timeout=30) as stream:
            events = sse_events(stream)
        assert events[-1]["status"] == "COMPLETED"
        assert any("Step 3/3" in line["message"] for e in events for line in e.get("logs") or ())
        result = requests.get(job["response_url"], timeout=10).json()
        image = requests.get(result["images"][0]["url"], timeout=10)
        assert image.status_code == 200
        assert image.headers["content-type"] == result["images"][0]["content_type"]
        assert Image.open(io.BytesIO(image.content)).size == (1024, 1024)


def test_an_uploaded_file_downloads_and_is_an_input(backend_config):
    data = png_bytes((16, 16))
    with serve_local_runtime(backend_config) as rt:
        urls = requests.post(rt.url + "/rest/storage/upload/initiate",
                             json={"content_type": "image/png", "file_name": "in.png"},
                             timeout=10).json()
        assert requests.put(urls["upload_url"], data=data, timeout=10).status_code == 200
        download = requests.get(urls["file_url"], timeout=10)
        assert download.content == data
        assert download.headers["content-type"] == "image/png"
        # An HTML upload is never a page: an attachment, on every backend.
        page = requests.post(rt.url + "/rest/storage/upload/initiate",
                             json={"content_type": "text/html", "file_name": "x.html"},
                             timeout=10).json()
        requests.put(page["upload_url"], data=b"<script>1</script>", timeout=10)
        html = requests.get(page["file_url"], timeout=10)
        assert html.headers["content-disposition"].startswith("attachment")
        # The runtime reads its own stored file as an input (no fetch).
        job = submit(rt.url, {"prompt": "edit", "image_url": urls["file_url"],
                              "num_inference_steps": 1}, endpoint=I2I)
        status = wait_status(job["status_url"])
        assert "error" not in status, status


def test_a_multipart_upload_joins_its_parts(backend_config):
    # S3 wants every part but the last to be 5 MiB at least; fal's clients send such parts.
    parts_data = [os.urandom(5 * MiB), os.urandom(1000)]
    with serve_local_runtime(backend_config) as rt:
        init = requests.post(rt.url + "/rest/storage/upload/initiate-multipart",
                             json={"content_type": "application/octet-stream",
                                   "file_name": "big.bin"}, timeout=10).json()
        parts = []
        for number, chunk in enumerate(parts_data, start=1):
            answer = requests.put(f"{init['upload_url']}/{number}", data=chunk, timeout=30)
            assert answer.status_code == 200, answer.text
            assert answer.json()["etag"] == hashlib.md5(chunk).hexdigest()
            parts.append(answer.json())
        wrong = requests.post(f"{init['upload_url']}/complete",
                              json={"parts": [{"partNumber": 1, "etag": "0" * 32}]}, timeout=10)
        assert wrong.status_code == 400 and "etag" in wrong.json()["detail"]
        done = requests.post(f"{init['upload_url']}/complete", json={"parts": parts},
                             timeout=30)
        assert done.status_code == 200, done.text
        assert requests.get(done.json()["file_url"], timeout=30).content == b"".join(parts_data)


def test_the_storage_cap_refuses_a_file_and_keeps_nothing(backend_config):
    config = backend_config | {"FALWEB_LOCAL_MAX_STORAGE_BYTES": 1000}
    with serve_local_runtime(config) as rt:
        first = requests.post(rt.url + "/rest/storage/upload/initiate",
                              json={"content_type": "text/plain"}, timeout=10).json()
        assert requests.put(first["upload_url"], data=b"a" * 600, timeout=10).status_code == 200
        second = requests.post(rt.url + "/rest/storage/upload/initiate",
                               json={"content_type": "text/plain"}, timeout=10).json()
        refused = requests.put(second["upload_url"], data=b"b" * 600, timeout=10)
        assert refused.status_code == 507
        assert requests.get(second["file_url"], timeout=10).status_code == 404
        assert rt.runtime.storage.used() == 600
        # Expired by the retention: the file answers 404 and its bytes are freed.
        assert rt.runtime.storage.expire(time.time() + 10, retention=1) >= 1
        assert requests.get(first["file_url"], timeout=10).status_code == 404
        assert rt.runtime.storage.used() == 0


def test_a_webhook_is_delivered_once_and_signed(backend_config):
    received = []
    hook = Flask("hook")

    @hook.post("/hook")
    def receive():
        received.append((dict(flask_request.headers), flask_request.get_data()))
        return "", 204

    with ServerThread(hook) as hook_server, serve_local_runtime(backend_config) as rt:
        rt.runtime.allow_webhook_prefix(hook_server.url + "/hook")
        job = submit(rt.url, {"prompt": "hooked", "num_inference_steps": 1},
                     fal_webhook=hook_server.url + "/hook")
        wait_until(lambda: received, timeout=20, message="the webhook")
        time.sleep(0.5)  # a second delivery, if any, would come now
        assert len(received) == 1
        headers, raw = received[0]
        assert json.loads(raw)["request_id"] == job["request_id"]
        jwks = requests.get(f"{rt.url}/rest/.well-known/jwks.json", timeout=10).json()
    x = jwks["keys"][0]["x"]
    key = Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(x + "=" * (-len(x) % 4)))
    message = "\n".join([headers["X-Fal-Webhook-Request-Id"], headers["X-Fal-Webhook-User-Id"],
                         headers["X-Fal-Webhook-Timestamp"],
                         hashlib.sha256(raw).hexdigest()]).encode()
    key.verify(bytes.fromhex(headers["X-Fal-Webhook-Signature"]), message)


def test_a_job_of_a_dead_worker_goes_to_the_next_after_its_lease(backend_config):
    config = backend_config | {"FALWEB_LOCAL_LEASE_SECONDS": 1.0, "FALWEB_LOCAL_WORKERS": 0}
    with serve_local_runtime(config) as rt:
        job = submit(rt.url, {"prompt": "orphan", "num_inference_steps": 1})
        # A worker claims it and dies: nothing renews its lease.
        assert rt.runtime.queue.claim("dead-worker").request_id == job["request_id"]
        assert requests.get(job["status_url"], timeout=10).json()["status"] == "IN_PROGRESS"
        rt.runtime.start(workers=1)
        status = wait_status(job["status_url"], timeout=30)
        assert any("previous worker stopped" in line["message"] for line in status["logs"])
        assert rt.runtime.queue.get(job["request_id"]).attempts == 2


def test_two_runtimes_on_one_store_share_jobs_tokens_and_keys(backend_config):
    # Two processes' worth of runtime on one database (SQLite: one instance folder).
    with serve_local_runtime(backend_config | {"FALWEB_LOCAL_WORKERS": 0}) as front, \
            serve_local_runtime(backend_config) as back:
        job = submit(front.url, {"prompt": "shared", "num_inference_steps": 1})
        status = wait_status(job["status_url"])
        assert status["status"] == "COMPLETED"
        token = requests.post(f"{front.url}/rest/tokens/", json={"allowed_apps": ["fast-sdxl"]},
                              timeout=10).json()
        assert back.runtime.tokens.verify(token, "fast-sdxl")["allowed_apps"] == ["fast-sdxl"]
        keys = [requests.get(f"{rt.url}/rest/.well-known/jwks.json", timeout=10).json()
                for rt in (front, back)]
        assert keys[0] == keys[1]


def test_a_cancelled_waiting_job_never_runs(backend_config):
    with serve_local_runtime(backend_config | {"FALWEB_LOCAL_WORKERS": 0}) as rt:
        job = submit(rt.url, {"prompt": "never", "num_inference_steps": 1})
        cancel = requests.put(job["cancel_url"], timeout=10)
        assert cancel.status_code == 202
        rt.runtime.start(workers=1)
        status = wait_status(job["status_url"])
        assert status["error_type"] == "request_cancelled"
        assert rt.runtime.queue.get(job["request_id"]).attempts == 0


def test_status_streams_of_many_jobs_all_end(backend_config):
    # Streams of waiting jobs are woken by other jobs' claims (their queue position).
    with serve_local_runtime(backend_config | {"FALWEB_LOCAL_WORKERS": 1}) as rt:
        jobs = [submit(rt.url, {"prompt": f"n{i}", "num_inference_steps": 1})
                for i in range(6)]
        finals = {}

        def follow(job):
            with requests.get(job["status_url"] + "/stream", stream=True, timeout=60) as s:
                finals[job["request_id"]] = sse_events(s)

        threads = [threading.Thread(target=follow, args=(job,)) for job in jobs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert len(finals) == 6
    for events in finals.values():
        assert events[-1]["status"] == "COMPLETED"
        positions = [e["queue_position"] for e in events if e["status"] == "IN_QUEUE"]
        assert positions == sorted(positions, reverse=True)


@pytest.mark.parametrize("setting,value,named", [
    ("FALWEB_DATABASE_URL", "mysql://root:hunter2@db/x", "FALWEB_DATABASE_URL"),
    ("FALWEB_STORAGE_URL", "s3://key:hunter2@bucket/p", "FALWEB_STORAGE_URL"),
    ("FALWEB_STORAGE_URL", "https://bucket/p", "FALWEB_STORAGE_URL"),
])
def test_a_bad_setting_stops_the_start_naming_it_without_its_secret(local_config, setting,
                                                                    value, named):
    from falweb.local import create_local_app
    from falweb.store.settings import SettingError

    with pytest.raises(SettingError) as refused:
        create_local_app(local_config | {setting: value})
    assert named in str(refused.value)
    assert "hunter2" not in str(refused.value)


def test_an_unreachable_database_is_named_without_its_password(local_config, pg_cluster):
    from falweb.local import create_local_app

    url = f"postgresql://postgres:hunter2@/nosuchdb?host={pg_cluster.socket_dir}"
    with pytest.raises(ConnectionError) as refused:
        create_local_app(local_config | {"FALWEB_DATABASE_URL": url})
    assert "FALWEB_DATABASE_URL" in str(refused.value) and "nosuchdb" in str(refused.value)
    assert "hunter2" not in str(refused.value)


def test_files_in_a_bucket_need_the_shared_database(local_config, s3_emulator, monkeypatch):
    from falweb.local import create_local_app
    from falweb.store.settings import SettingError

    for name, value in s3_emulator.environ.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingError, match="FALWEB_DATABASE_URL"):
        create_local_app(local_config | {"FALWEB_STORAGE_URL": f"s3://{s3_emulator.bucket()}",
                                         "FALWEB_S3_ENDPOINT_URL": s3_emulator.endpoint})


def test_secrets_never_reach_an_answer_or_a_log(local_config, pg_cluster, s3_emulator,
                                               monkeypatch, caplog):
    # The test cluster trusts local connections: the password is sent and ignored, which
    # is enough to see where falweb carries it.
    password = "db-password-0123456789"
    for name, value in s3_emulator.environ.items():
        monkeypatch.setenv(name, value)
    secret_key = s3_emulator.environ["AWS_SECRET_ACCESS_KEY"]
    url = fresh_database(pg_cluster).replace("postgres@", f"postgres:{password}@", 1)
    config = local_config | {"FALWEB_DATABASE_URL": url,
                             "FALWEB_STORAGE_URL": f"s3://{s3_emulator.bucket()}/secret",
                             "FALWEB_S3_ENDPOINT_URL": s3_emulator.endpoint}
    seen = []
    with serve_local_runtime(config) as rt:
        urls = requests.post(rt.url + "/rest/storage/upload/initiate",
                             json={"content_type": "text/plain"}, timeout=10).json()
        seen.append(requests.put(urls["upload_url"], data=b"x", timeout=10))
        seen.append(requests.get(urls["file_url"], allow_redirects=False, timeout=10))
        seen.append(requests.get(urls["file_url"], timeout=10))
        job = submit(rt.url, {"prompt": "quiet", "num_inference_steps": 1})
        wait_status(job["status_url"])
        seen.append(requests.get(job["response_url"], timeout=10))
        seen.append(requests.get(rt.url + "/queue/fal-ai/fast-sdxl/requests/nope", timeout=10))
        seen.append(requests.get(rt.url + "/healthz", timeout=10))
        seen.append(requests.put(rt.url + "/cdn/uploads/nope", data=b"x", timeout=10))
    for answer in seen:
        text = answer.text + json.dumps(dict(answer.headers))
        assert password not in text and secret_key not in text
    for record in caplog.records:
        text = record.getMessage() + str(record.exc_text or "")
        assert password not in text and secret_key not in text
    assert seen[1].status_code == 302  # the presigned URL: signed, never the key itself


def test_downloads_stream_through_when_the_store_is_private(local_config, pg_cluster,
                                                           s3_emulator, monkeypatch):
    for name, value in s3_emulator.environ.items():
        monkeypatch.setenv(name, value)
    config = local_config | {"FALWEB_DATABASE_URL": fresh_database(pg_cluster),
                             "FALWEB_STORAGE_URL": f"s3://{s3_emulator.bucket()}/private",
                             "FALWEB_S3_ENDPOINT_URL": s3_emulator.endpoint,
                             "FALWEB_STORAGE_DOWNLOADS": "stream"}
    data = os.urandom(100_000)
    with serve_local_runtime(config) as rt:
        urls = requests.post(rt.url + "/rest/storage/upload/initiate",
                             json={"content_type": "application/pdf", "file_name": "a.pdf"},
                             timeout=10).json()
        requests.put(urls["upload_url"], data=data, timeout=10)
        whole = requests.get(urls["file_url"], allow_redirects=False, timeout=10)
        assert whole.status_code == 200 and whole.content == data
        assert whole.headers["content-type"] == "application/pdf"
        assert whole.headers["content-disposition"].startswith("attachment")
        assert whole.headers["content-security-policy"] == "sandbox; default-src 'none'"
        part = requests.get(urls["file_url"], headers={"Range": "bytes=10-19"}, timeout=10)
        assert part.status_code == 206 and part.content == data[10:20]
        assert part.headers["content-range"] == f"bytes 10-19/{len(data)}"


def test_without_the_scale_extra_sqlite_still_runs_and_postgres_says_what_is_missing(
        tmp_path):
    # psycopg and boto3 made unimportable: the default needs neither; asking for
    # PostgreSQL names the setting and the extra.
    code = f"""
import sys, time
sys.modules["psycopg"] = None
sys.modules["boto3"] = None
from falweb.local import create_local_app, runtime_of
from falweb.store.settings import SettingError
app = create_local_app({{"FALWEB_INSTANCE_PATH": {str(tmp_path)!r},
                        "FALWEB_LOCAL_STEP_DELAY": 0.0}})
client = app.test_client()
rid = client.post("/queue/fal-ai/fast-sdxl", json={{"prompt": "x"}}).json["request_id"]
for _ in range(500):
    if runtime_of(app).queue.get(rid).status == "COMPLETED":
        break
    time.sleep(0.02)
else:
    raise SystemExit("the job never completed")
runtime_of(app).close()
try:
    create_local_app({{"FALWEB_INSTANCE_PATH": {str(tmp_path)!r},
                      "FALWEB_DATABASE_URL": "postgresql://x@/y"}})
except SettingError as exc:
    print(exc)
"""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "FALWEB_DATABASE_URL" in done.stdout and "falweb[scale]" in done.stdout


def test_a_webhook_never_queued_by_a_dead_worker_is_sent_later(backend_config):
    received = []
    hook = Flask("hook")

    @hook.post("/hook")
    def receive():
        received.append(json.loads(flask_request.get_data())["request_id"])
        return "", 204

    with ServerThread(hook) as hook_server, \
            serve_local_runtime(backend_config | {"FALWEB_LOCAL_WORKERS": 0}) as rt:
        rt.runtime.allow_webhook_prefix(hook_server.url + "/hook")
        job = submit(rt.url, {"prompt": "lost", "num_inference_steps": 1},
                     fal_webhook=hook_server.url + "/hook")
        queue = rt.runtime.queue
        # A worker completes the job and dies before it queues the webhook.
        assert queue.claim("doomed").request_id == job["request_id"]
        assert queue.complete(job["request_id"], "doomed", result={"images": []})
        deliveries = rt.runtime.deliveries
        assert deliveries.recover() == 0  # too fresh: its worker may still queue it
        assert deliveries.recover(now=time.time() + 60) == 1
        wait_until(lambda: received, timeout=20, message="the recovered webhook")
        assert received == [job["request_id"]]
        assert deliveries.recover(now=time.time() + 60) == 0


def test_a_stream_is_woken_by_another_hosts_change(local_config, pg_cluster):
    # The API host never looks on its own here (a minute between looks): only PostgreSQL's
    # NOTIFY, sent when the other host's worker changes the job, can end the stream in time.
    config = local_config | {"FALWEB_DATABASE_URL": fresh_database(pg_cluster)}
    with serve_local_runtime(config | {"FALWEB_LOCAL_WORKERS": 0}) as front, \
            serve_local_runtime(config | {"FALWEB_LOCAL_WORKERS": 0}) as back:
        front.runtime.changes.poll = 60
        job = submit(front.url, {"prompt": "woken", "num_inference_steps": 2})
        with requests.get(job["status_url"] + "/stream", params={"logs": 1}, stream=True,
                          timeout=20) as stream:
            back.runtime.start(workers=1)
            events = sse_events(stream)
    assert [e["status"] for e in events][-1] == "COMPLETED"
    assert "IN_PROGRESS" in [e["status"] for e in events]


def test_hosts_starting_together_migrate_once(pg_cluster, tmp_path):
    import subprocess
    import sys

    url = fresh_database(pg_cluster)
    code = f"""
from falweb.local.sql import open_database
db = open_database({{"FALWEB_DATABASE_URL": {url!r}}}, {str(tmp_path)!r})
print(db.connect().execute("SELECT steps FROM falweb_migrations WHERE name = 'local'")
      .fetchone()["steps"])
"""
    starts = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outputs = [proc.communicate(timeout=60) for proc in starts]
    assert [proc.returncode for proc in starts] == [0] * 4, [err for _, err in outputs]
    from falweb.local.sql import POSTGRES_SCHEMA

    assert {out.strip() for out, _ in outputs} == {str(len(POSTGRES_SCHEMA))}
