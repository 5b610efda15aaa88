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
