"""Fault points for the crash and disk-full tests (inert unless PROBEHEAT_FAULT is set).

``PROBEHEAT_FAULT=EVENT:N:ACTION`` makes the N-th occurrence (1-based) of EVENT in this
process ``kill`` it with SIGKILL, raise ``enospc`` (OSError: no space left on device), or
``pause`` (sleep up to a minute, holding whatever it holds, until the test kills it).
Events: ``shard-start``, ``shard-tensors``, ``shard-temp`` (a safetensors temporary file
left half-written), ``shard-done``, ``finalize-meta``, ``finalize-manifest``,
``finalize-renamed``.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from pathlib import Path

_COUNTS: dict[str, int] = {}


def fault_point(event: str, folder: Path | None = None) -> None:
    spec = os.environ.get("PROBEHEAT_FAULT")
    if not spec:
        return
    want, count, action = spec.split(":")
    if want != event:
        return
    _COUNTS[event] = _COUNTS.get(event, 0) + 1
    if _COUNTS[event] != int(count):
        return
    if action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if action == "pause":
        print(f"paused at {event}", flush=True)
        time.sleep(60)
        return
    if event == "shard-temp" and folder is not None:  # what a kill inside save_file leaves
        (folder / ".tmpK1ll3d").write_bytes(b"\x00" * 64)
    os.kill(os.getpid(), signal.SIGKILL)
