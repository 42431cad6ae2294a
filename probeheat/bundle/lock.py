"""One writer per unfinished run: an advisory lock file inside ``OUT.partial/``.

The lock is ``fcntl.flock`` on ``.lock``, holding the owner's pid, host and start time for
the message a second writer gets. The kernel releases a flock when its process dies (even
by kill -9), so a lock left by a dead writer is taken over safely, with no guess about
whether the pid is still alive. (On network file systems flock is only as good as the
server's lock support.)
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from pathlib import Path

from ..errors import UserError

LOCK_NAME = ".lock"
_HELD: dict[str, int] = {}  # lock file -> fd, for the locks this process holds


class PartialLock:
    """Held while a process writes a partial run; ``release`` when done.

    A process may take a lock it already holds (a library caller opening a second writer
    on its own partial); other processes are refused while it lives.
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        path = self.folder / LOCK_NAME
        key = str(path.resolve())
        if key in _HELD and path.exists():
            self.fd, self.key = _HELD[key], key
            return
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except FileNotFoundError:
            raise UserError(str(self.folder), "disappeared (another process finished or "
                            "removed the run)", "run the command again") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _owner(fd)
            os.close(fd)
            raise UserError(str(self.folder), f"is being written by {owner}",
                            "wait for that run to finish (or stop it), then pass --resume"
                            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
        self.fd, self.key = fd, key
        _HELD[key] = fd

    def release(self, folder: Path | None = None, *, unlink: bool = True) -> None:
        """Drop the lock; ``folder`` is where the lock file is now (after a rename)."""
        if self.fd is None:
            return
        try:
            if unlink:
                (Path(folder or self.folder) / LOCK_NAME).unlink(missing_ok=True)
        finally:
            if _HELD.get(self.key) == self.fd:
                del _HELD[self.key]
                os.close(self.fd)
            self.fd = None


def _owner(fd: int) -> str:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return f"pid {int(data['pid'])} on {data['host']}"
    except (ValueError, KeyError, TypeError, OSError):
        return "another process"


def clear_stale(folder: Path) -> None:
    """Remove a lock file nobody holds (left in a finished bundle by a crash after its
    rename); a held one is left alone."""
    path = Path(folder) / LOCK_NAME
    if not path.exists():
        return
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path.unlink(missing_ok=True)
    except BlockingIOError:
        pass
    finally:
        os.close(fd)
