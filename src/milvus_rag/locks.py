"""Cross-process locks on a file, taken as Milvus Lite takes its folder's ``LOCK``: ``flock`` on
POSIX, ``msvcrt.locking`` of the first byte on Windows. A lock belongs to one open of the file:
another open waits, even in this process; closing the file or ending the process frees it."""

import contextlib
import errno
import os
import time
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt

_HELD = (errno.EACCES, errno.EAGAIN, errno.EWOULDBLOCK)  # what each says when another holds it


def _lock(fd: int, lock: bool = True) -> bool:
    """Lock (or unlock) the open file ``fd`` without waiting; False if another holds it."""
    try:
        if fcntl is not None:
            fcntl.flock(fd, (fcntl.LOCK_EX | fcntl.LOCK_NB) if lock else fcntl.LOCK_UN)
        else:
            os.lseek(fd, 0, os.SEEK_SET)  # msvcrt locks bytes from the file's position
            msvcrt.locking(fd, msvcrt.LK_NBLCK if lock else msvcrt.LK_UNLCK, 1)
    except OSError as err:
        if err.errno not in _HELD:
            raise
        return False
    return True


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the lock on ``path`` (made if missing) while the block runs, waiting for it first."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        while not _lock(fd):  # polled: msvcrt's own wait gives up after 10 s
            time.sleep(0.05)
        try:
            yield
        finally:
            _lock(fd, lock=False)  # Windows frees a closed file's locks only eventually
    finally:
        os.close(fd)


def held_elsewhere(path: str | Path) -> bool:
    """Whether another open of the existing file ``path`` holds its lock (False if unknown)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        return not _lock(fd) or not _lock(fd, lock=False)  # free: taken, then freed at once
    except OSError:  # locks not supported there: cannot tell
        return False
    finally:
        os.close(fd)
