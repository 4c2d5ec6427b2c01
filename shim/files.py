"""Private files: the one way keyshim writes a file that holds (or guards) a secret.

The master key, the database file, a rotation's new key and the TLS keys all go through
:func:`write_private`: the data goes to a temporary file in the same directory, created 0600
so it is never readable by others even for a moment (the umask does not apply), is flushed to
disk, and only then appears under its name in one step. A crash leaves the old file or the new
one, never half of one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["remove_private", "write_private"]


def write_private(
    path: str | os.PathLike[str], data: bytes | str, *, mode: int = 0o600, exclusive: bool = False
) -> None:
    """Write ``data`` to ``path`` atomically and durably, with exactly ``mode``.

    ``exclusive=True`` never replaces an existing file: it raises ``FileExistsError`` instead
    (for files whose existence means something, like an interrupted rotation's new key).
    Text is written as UTF-8.
    """
    target = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        if exclusive:
            os.link(tmp, target)  # fails if target exists; the name appears complete or not at all
            tmp.unlink()
        else:
            os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def remove_private(path: str | os.PathLike[str]) -> bool:
    """Delete ``path`` durably (its directory fsynced); False if it was not there."""
    target = Path(path)
    try:
        target.unlink()
    except FileNotFoundError:
        return False
    _fsync_dir(target.parent)
    return True


def _fsync_dir(directory: Path) -> None:
    """Make the new name itself durable (best effort: not every platform opens directories)."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    with contextlib.suppress(OSError):
        os.fsync(dir_fd)
    os.close(dir_fd)
