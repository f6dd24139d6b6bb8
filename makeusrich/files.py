"""Reading a file that may not be one: a FIFO, a device or a socket where a file is expected (a pairs folder, a
local store) would block its reader for good, or never end."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


class NotRegularFile(OSError):
    """The path is a FIFO, a device or a socket: nothing was read."""


def read_regular(path: str | Path, most: int | None = None) -> bytes:
    """The bytes of a regular file (the first `most` of them when given). IsADirectoryError for a folder,
    NotRegularFile for anything else that is not a file; O_NONBLOCK lets the open of a FIFO return at once."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(descriptor, "rb") as handle:
        mode = os.fstat(descriptor).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "is a folder", str(path))
        if not stat.S_ISREG(mode):
            raise NotRegularFile(errno.EINVAL, "not a regular file", str(path))
        return handle.read() if most is None else handle.read(most)
