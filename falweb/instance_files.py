"""Secrets kept in the instance folder, created once however many processes start at once.

gunicorn starts its workers together on a fresh instance folder: each may find a secret file
missing. :func:`read_or_create` writes a new one under a temporary name and links it into
place, which fails if another process got there first; a reader therefore only ever sees a
complete file, and every process ends up with the same secret.
"""

import os
import tempfile


def read_or_create(path, make, mode=0o600):
    """The bytes of ``path``; when it does not exist, ``make()``'s, stored there first."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        pass
    data = make()
    folder = os.path.dirname(path) or "."
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=".new-")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(temporary, path)  # never replaces: the first process's file wins
        except FileExistsError:
            pass
    finally:
        os.unlink(temporary)
    with open(path, "rb") as f:
        return f.read()
