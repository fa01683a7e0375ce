"""Files that are complete or absent: written under a temporary name, flushed to disk, renamed.

A reader (or a resumed run) never sees half a file: until the rename, the final name holds
the previous version or nothing; after it, the whole new file, also across a power loss
(the data and the directory entry are fsynced). No ``mxnet`` import here: the packer uses it.
"""
from __future__ import annotations

import os
from typing import Callable


def temporary_name(path: str) -> str:
    """Where ``path`` is written before the rename (per process, so runs do not collide)."""
    return f"{path}.tmp-{os.getpid()}"


def fsync_path(path: str) -> None:
    """Flush a file's data, or a folder's entries, to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_quietly(path: str) -> None:
    """Remove ``path`` if it exists; a failure to remove (the disk went away) is not raised
    over the error that made the caller clean up."""
    try:
        os.remove(path)
    except OSError:
        pass


def write_atomically(path: str, write: Callable[[str], None]) -> None:
    """Call ``write(temporary path)``, flush the file, rename it to ``path``, flush the folder.
    On any error (or interruption) the temporary file is removed and ``path`` is untouched."""
    tmp = temporary_name(path)
    try:
        write(tmp)
        fsync_path(tmp)
        os.replace(tmp, path)
        fsync_path(os.path.dirname(os.path.abspath(path)))
    finally:
        if os.path.exists(tmp):
            remove_quietly(tmp)
