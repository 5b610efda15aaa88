"""Secrets in the instance folder: processes starting together all get one, complete secret."""

import subprocess
import sys
import textwrap


def test_processes_starting_at_once_share_one_complete_secret(tmp_path):
    # Each process makes its secret slowly, so that all of them find the file missing; the
    # old open-O_EXCL-then-write let a reader see an empty file (a worker crashed on it).
    code = textwrap.dedent(f"""
        import os, sys, time
        from falweb.instance_files import read_or_create
        def make():
            time.sleep(0.2)
            return os.urandom(64)
        sys.stdout.write(read_or_create({str(tmp_path / "secret")!r}, make).hex())
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
             for _ in range(8)]
    secrets = {proc.communicate(timeout=60)[0] for proc in procs}
    assert all(proc.returncode == 0 for proc in procs)
    assert len(secrets) == 1 and len(secrets.pop()) == 128
    assert (tmp_path / "secret").stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]  # no temporary left behind


def test_processes_starting_at_once_on_a_fresh_folder_all_start(tmp_path):
    # gunicorn starts its workers together: every SQLite file (history, users, limits, the
    # runtime's queue) is new, and a worker once died on "database is locked" switching it
    # to WAL while another created its tables.
    code = textwrap.dedent(f"""
        from falweb import backend, create_app
        app = create_app({{"FALWEB_INSTANCE_PATH": {str(tmp_path / "instance")!r}}})
        backend.embedded_runtime(app).close()
        print("started")
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(6)]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 6, [err[-2000:] for _, err in outputs]
    assert all(out.strip() == "started" for out, _ in outputs)
