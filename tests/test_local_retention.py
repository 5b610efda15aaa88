"""The local runtime's disk stays bounded: upload URLs cost no folder until used, stored files
and finished jobs expire, and a cap on the bytes stored refuses more with 507, leaving
nothing of what it refused."""

import os
import threading
import time

import pytest
import requests

from falweb.local import create_local_app
from falweb.local import runtime_of
from falweb.local.storage import UPLOAD_EXPIRY_SECONDS
from falweb.testing import serve_local_runtime
from falweb.testing import wait_until
from tests.local_helpers import wait_status

SMALL = {"num_inference_steps": 1, "image_size": {"width": 64, "height": 64}}
HOUR = 3600


def initiate(base, name="f.bin", content_type="application/octet-stream"):
    answer = requests.post(f"{base}/rest/storage/upload/initiate",
                           json={"content_type": content_type, "file_name": name}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def upload(base, data, name="f.bin"):
    urls = initiate(base, name)
    put = requests.put(urls["upload_url"], data=data, timeout=10)
    assert put.status_code == 200, put.text
    return urls["file_url"]


def file_id(url):
    return url.split("/cdn/files/", 1)[1].split("/", 1)[0]


def submit(base, prompt):
    answer = requests.post(f"{base}/queue/fal-ai/fast-sdxl",
                           json={"prompt": prompt, **SMALL}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def folders(runtime):
    return set(os.listdir(runtime.storage.root))


def age(runtime, table, column, key, ids, seconds):
    """Move ``column`` of the rows ``ids`` ``seconds`` into the past."""
    with runtime.db.transaction() as conn:
        conn.executemany(f"UPDATE {table} SET {column} = {column} - ? WHERE {key} = ?",
                         [(seconds, i) for i in ids])


def outputs_of(base, job):
    result = requests.get(job["response_url"], timeout=10).json()
    return [image["url"] for image in result["images"]]


def test_initiating_an_upload_makes_no_folder(local_runtime):
    before = folders(local_runtime.runtime)
    urls = [initiate(local_runtime.url) for _ in range(50)]
    assert folders(local_runtime.runtime) == before
    # the first PUT makes it
    assert requests.put(urls[0]["upload_url"], data=b"x", timeout=10).status_code == 200
    assert folders(local_runtime.runtime) == before | {file_id(urls[0]["file_url"])}


@pytest.fixture
def retention_config(local_config):
    return local_config | {"FALWEB_LOCAL_FILE_RETENTION_SECONDS": 2 * HOUR,
                           "FALWEB_LOCAL_JOB_RETENTION_SECONDS": 2 * HOUR}


def test_retention_removes_exactly_what_expired_while_work_goes_on(retention_config):
    with serve_local_runtime(retention_config) as server:
        base, rt = server.url, server.runtime
        # Files: N expired, M fresh.
        expired_files = [upload(base, f"old {i}".encode()) for i in range(30)]
        fresh_files = [upload(base, f"new {i}".encode()) for i in range(20)]
        age(rt, "files", "created_at", "file_id", map(file_id, expired_files), 3 * HOUR)
        # Upload URLs never used: expired after an hour, fresh ones stay usable.
        stale_uploads = [initiate(base) for _ in range(6)]
        age(rt, "files", "created_at", "file_id",
            [file_id(u["file_url"]) for u in stale_uploads], UPLOAD_EXPIRY_SECONDS + 60)
        waiting_uploads = [initiate(base) for _ in range(4)]
        # A multipart upload left unfinished for more than an hour: its parts go too.
        unfinished = requests.post(f"{base}/rest/storage/upload/initiate-multipart",
                                   json={"content_type": "text/plain"}, timeout=10).json()
        assert requests.put(unfinished["upload_url"] + "/1", data=b"part",
                            timeout=10).status_code == 200
        age(rt, "files", "created_at", "file_id", [file_id(unfinished["file_url"])],
            UPLOAD_EXPIRY_SECONDS + 60)
        # Jobs: finished long ago, and recently.
        old_jobs = [submit(base, f"old {i}") for i in range(15)]
        new_jobs = [submit(base, f"new {i}") for i in range(10)]
        for job in old_jobs + new_jobs:
            wait_status(job["status_url"], logs=False)
        age(rt, "jobs", "finished_at", "request_id", [j["request_id"] for j in old_jobs],
            3 * HOUR)
        # Their outputs were stored just now: they stay, as files of their own age.
        kept_outputs = [url for job in old_jobs + new_jobs for url in outputs_of(base, job)]
        files_before = rt.db.connect().execute("SELECT COUNT(*) FROM files").fetchone()[0]

        # The cleanup runs in small batches while requests keep coming.
        results, errors = [], []

        def clean():
            try:
                results.append(rt.cleanup(batch=4))
            except Exception as exc:  # surfaced below
                errors.append(exc)

        cleaner = threading.Thread(target=clean)
        cleaner.start()
        during_jobs = [submit(base, f"during {i}") for i in range(8)]
        during_files = [upload(base, f"during {i}".encode()) for i in range(8)]
        cleaner.join(timeout=60)
        assert not cleaner.is_alive() and not errors, errors

        gone_files = [*map(file_id, expired_files), *(file_id(u["file_url"])
                                                      for u in stale_uploads),
                      file_id(unfinished["file_url"])]
        conn = rt.db.connect()
        left = conn.execute("SELECT COUNT(*) FROM files").fetchone()[0]
        assert left == files_before - len(gone_files) + len(during_files) + len(during_jobs)
        for fid in gone_files:
            assert conn.execute("SELECT 1 FROM files WHERE file_id = ?", (fid,)).fetchone() \
                is None
            assert not os.path.exists(os.path.join(rt.storage.root, fid))
        for url in expired_files:
            assert requests.get(url, timeout=10).status_code == 404
        for upload_urls in stale_uploads:
            late = requests.put(upload_urls["upload_url"], data=b"late", timeout=10)
            assert late.status_code == 404
        for i, url in enumerate(fresh_files):
            assert requests.get(url, timeout=10).content == f"new {i}".encode()
        for i, url in enumerate(during_files):
            assert requests.get(url, timeout=10).content == f"during {i}".encode()
        for url in kept_outputs:
            assert requests.get(url, timeout=10).status_code == 200
        for upload_urls in waiting_uploads:
            assert requests.put(upload_urls["upload_url"], data=b"now",
                                timeout=10).status_code == 200
            assert requests.get(upload_urls["file_url"], timeout=10).content == b"now"

        for job in old_jobs:
            assert requests.get(job["status_url"], timeout=10).status_code == 404
            assert rt.queue.logs(job["request_id"]) == []
        for job in new_jobs + during_jobs:
            final = wait_status(job["status_url"], logs=False)
            assert final["status"] == "COMPLETED" and "error" not in final
            for url in outputs_of(base, job):
                assert requests.get(url, timeout=10).status_code == 200
        assert sum(rt.queue.counts().values()) == len(new_jobs) + len(during_jobs)
        # The bytes counted against the cap are those of the files left (the unfinished
        # upload's part no longer counts), and those on disk.
        on_disk = sum(os.path.getsize(os.path.join(d, n))
                      for d, _, names in os.walk(rt.storage.root) for n in names)
        total = conn.execute("SELECT SUM(size) FROM files").fetchone()[0]
        assert rt.storage.used() == total == on_disk


def test_two_processes_cleaning_one_folder_remove_each_file_once(retention_config):
    with serve_local_runtime(retention_config) as server:
        expired = [upload(server.url, b"old") for _ in range(40)]
        fresh = [upload(server.url, b"new") for _ in range(10)]
        age(server.runtime, "files", "created_at", "file_id", map(file_id, expired), 3 * HOUR)
        other = create_local_app(retention_config | {"FALWEB_LOCAL_WORKERS": 0})
        try:
            results = []
            cleaners = [threading.Thread(target=lambda rt=rt: results.append(rt.cleanup(batch=3)))
                        for rt in (server.runtime, runtime_of(other))]
            for cleaner in cleaners:
                cleaner.start()
            for cleaner in cleaners:
                cleaner.join(timeout=60)
        finally:
            runtime_of(other).close()
        assert len(results) == 2
        assert sum(r["files"] for r in results) == len(expired)
        for url in fresh:
            assert requests.get(url, timeout=10).content == b"new"
        assert server.runtime.storage.used() == 3 * len(fresh)


def test_only_one_process_runs_the_cleanup_per_interval(local_runtime):
    rt = local_runtime.runtime
    wait_until(lambda: rt.db.connect().execute(
        "SELECT 1 FROM maintenance WHERE task = 'cleanup'").fetchone(),
        message="the cleanup at start")
    assert not rt._claim_cleanup()  # it just ran (at start)
    assert rt._claim_cleanup(now=time.time() + 3600)


def test_a_job_whose_webhook_is_still_being_delivered_is_kept(retention_config):
    with serve_local_runtime(retention_config) as server:
        rt = server.runtime
        job = submit(server.url, "kept")
        wait_status(job["status_url"], logs=False)
        with rt.db.transaction() as conn:
            conn.execute("INSERT INTO deliveries (request_id, webhook_url, body, next_at)"
                         " VALUES (?, 'https://example.invalid/h', x'7b7d', ?)",
                         (job["request_id"], time.time() + HOUR))
        age(rt, "jobs", "finished_at", "request_id", [job["request_id"]], 3 * HOUR)
        rt.cleanup()
        assert rt.queue.get(job["request_id"]) is not None
        with rt.db.transaction() as conn:
            conn.execute("UPDATE deliveries SET delivered_at = ? WHERE request_id = ?",
                         (time.time() - 3 * HOUR, job["request_id"]))
        assert rt.cleanup()["jobs"] == 1
        assert rt.queue.get(job["request_id"]) is None
        assert rt.db.connect().execute("SELECT COUNT(*) FROM deliveries").fetchone()[0] == 0


def test_retention_zero_keeps_everything(local_config):
    config = local_config | {"FALWEB_LOCAL_FILE_RETENTION_SECONDS": 0,
                             "FALWEB_LOCAL_JOB_RETENTION_SECONDS": 0}
    with serve_local_runtime(config) as server:
        url = upload(server.url, b"keep")
        job = submit(server.url, "keep")
        wait_status(job["status_url"], logs=False)
        age(server.runtime, "files", "created_at", "file_id", [file_id(url)], 100 * 24 * HOUR)
        age(server.runtime, "jobs", "finished_at", "request_id", [job["request_id"]],
            100 * 24 * HOUR)
        assert server.runtime.cleanup()["files"] == 0
        assert requests.get(url, timeout=10).content == b"keep"
        assert requests.get(job["status_url"], timeout=10).status_code == 200


# -- the storage cap ------------------------------------------------------------------------


def assert_insufficient(answer, limit):
    assert answer.status_code == 507, answer.text
    detail = answer.json()["detail"]
    assert str(limit) in detail and "FALWEB_LOCAL_MAX_STORAGE_BYTES" in detail


def leftovers(runtime, fid):
    folder = os.path.join(runtime.storage.root, fid)
    found = []
    for _, _, names in os.walk(folder):
        found += names
    return found


def test_the_storage_cap_refuses_with_507_and_leaves_nothing(local_config):
    cap = 1000
    with serve_local_runtime(local_config | {"FALWEB_LOCAL_MAX_STORAGE_BYTES": cap}) as server:
        base, rt = server.url, server.runtime
        kept = upload(base, b"a" * 600)
        assert rt.storage.used() == 600
        # declared too big
        refused = initiate(base)
        assert_insufficient(requests.put(refused["upload_url"], data=b"b" * 600, timeout=10),
                            cap)

        # streamed without a length: refused while streaming
        def chunks():
            for _ in range(6):
                yield b"c" * 100

        assert_insufficient(requests.put(refused["upload_url"], data=chunks(), timeout=10), cap)
        assert requests.get(refused["file_url"], timeout=10).status_code == 404
        assert leftovers(rt, file_id(refused["file_url"])) == []
        # multipart: parts count as soon as they are stored
        multi = requests.post(f"{base}/rest/storage/upload/initiate-multipart",
                              json={"content_type": "text/plain"}, timeout=10).json()
        first = requests.put(multi["upload_url"] + "/1", data=b"d" * 300, timeout=10)
        assert first.status_code == 200
        assert_insufficient(requests.put(multi["upload_url"] + "/2", data=b"e" * 300,
                                         timeout=10), cap)
        assert leftovers(rt, file_id(multi["file_url"])) == ["1"]
        done = requests.post(multi["upload_url"] + "/complete",
                             json={"parts": [first.json()]}, timeout=10)
        assert done.status_code == 200
        assert rt.storage.used() == 900
        # the Python client's direct upload
        token = requests.post(f"{base}/rest/storage/auth/token", timeout=10).json()["token"]
        direct = requests.post(f"{base}/cdn/files/upload", data=b"f" * 200,
                               headers={"Authorization": f"Bearer {token}",
                                        "Content-Type": "text/plain"}, timeout=10)
        assert_insufficient(direct, cap)
        # engine outputs: the request fails with 507, its outputs stored so far are gone
        run = requests.post(f"{base}/run/fal-ai/fast-sdxl",
                            json={"prompt": "x", **SMALL, "num_images": 2}, timeout=30)
        assert_insufficient(run, cap)
        job = submit(base, "queued")
        final = wait_status(job["status_url"], logs=False)
        assert final["error_type"] == "insufficient_storage"
        assert_insufficient(requests.get(job["response_url"], timeout=10), cap)
        # nothing but the two files that fit
        conn = rt.db.connect()
        complete = conn.execute("SELECT COUNT(*) FROM files WHERE complete = 1").fetchone()[0]
        assert complete == 2 and rt.storage.used() == 900
        assert requests.get(kept, timeout=10).content == b"a" * 600
        on_disk = sum(os.path.getsize(os.path.join(d, n))
                      for d, _, names in os.walk(rt.storage.root) for n in names)
        assert on_disk == 900
        # room again once a file expires
        age(rt, "files", "created_at", "file_id", [file_id(kept)], 30 * 24 * HOUR)
        rt.cleanup()
        assert rt.storage.used() == 300
        upload(base, b"g" * 600)


def test_the_cap_holds_for_uploads_side_by_side(local_config):
    cap = 10_000
    with serve_local_runtime(local_config | {"FALWEB_LOCAL_MAX_STORAGE_BYTES": cap}) as server:
        targets = [initiate(server.url) for _ in range(12)]
        codes = []

        def put(urls):
            codes.append(requests.put(urls["upload_url"], data=b"z" * 1000, timeout=30)
                         .status_code)

        threads = [threading.Thread(target=put, args=(t,)) for t in targets]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert sorted(codes) == [200] * 10 + [507] * 2
        assert server.runtime.storage.used() == cap
