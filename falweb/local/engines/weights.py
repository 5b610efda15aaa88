"""Where an engine may load extra weights from (LoRAs, embeddings): the weights folders.

A caller names these files in its input (``loras[0].path``), so a path must stay inside one
of the folders the operator listed (FALWEB_LOCAL_WEIGHTS_DIRS; by default the instance
folder's ``weights/``): ``..`` is refused, symlinks are resolved before the check (a link
inside a folder that points outside is outside), relative paths are looked up in the
folders in order. Plain functions: importable, and testable, without torch.
"""

import os
import re

from falweb.local.engines import InvalidInput

SETTING = "FALWEB_LOCAL_WEIGHTS_DIRS"


def _inside(path, roots):
    return any(path == root or os.path.commonpath([path, root]) == root for root in roots)


def weights_path(value, field, roots):
    """The real path of the local file or folder that ``value`` names inside one of the
    folders ``roots``; :class:`InvalidInput` naming ``field`` otherwise (a URL, ``..``, a
    path outside the folders, nothing there)."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(field, "must be the path of a .safetensors file or folder")
    path = value[len("file://"):] if value.startswith("file://") else value
    if "://" in path:
        raise InvalidInput(field, f"{value!r} is not a local path; the diffusers engine loads "
                                  "only local .safetensors files (no downloads)")
    if "\0" in path or ".." in re.split(r"[\\/]", path):
        raise InvalidInput(field, "'..' is not allowed in weights paths")
    real_roots = [os.path.realpath(root) for root in roots]
    candidates = [path] if os.path.isabs(path) else [os.path.join(r, path) for r in real_roots]
    inside = False
    for candidate in candidates:
        real = os.path.realpath(candidate)
        if not _inside(real, real_roots):
            continue
        inside = True
        if os.path.exists(real):
            return real
    if not inside:
        raise InvalidInput(field, f"{value!r} is outside the weights folders ({SETTING}; by "
                                  "default the instance folder's weights/)")
    raise InvalidInput(field, f"{value!r} is not a file or folder in the weights folders")


def weights_file(value, field, roots, preferred):
    """The ``.safetensors`` file that ``value`` names (the file itself, or the one to use in
    the folder: the only one, or ``preferred``), checked by :func:`weights_path`; the
    chosen file is checked again, as it may be a link that leads out."""
    path = weights_path(value, field, roots)
    if os.path.isfile(path):
        chosen = path
    else:
        try:
            names = sorted(n for n in os.listdir(path) if n.endswith(".safetensors"))
        except OSError:
            raise InvalidInput(field, f"{value!r} cannot be read") from None
        if preferred in names:
            chosen = os.path.join(path, preferred)
        elif len(names) == 1:
            chosen = os.path.join(path, names[0])
        else:
            raise InvalidInput(field, f"folder {value!r} holds {len(names)} .safetensors "
                                      f"files; name one (or call it {preferred})")
    real = os.path.realpath(chosen)
    if not _inside(real, [os.path.realpath(root) for root in roots]):
        raise InvalidInput(field, f"{value!r} leads outside the weights folders ({SETTING})")
    if not real.endswith(".safetensors") or not os.path.isfile(real):
        raise InvalidInput(field, f"only .safetensors files are accepted, not {value!r}")
    return real
