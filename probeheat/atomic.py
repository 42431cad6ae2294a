"""One way to write a user's output file (a figure, a table): a temporary file beside it,
then a rename, so a failure or a kill leaves either the old file or the new one."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

from .errors import UserError


def write_atomically(out: Path, write: Callable) -> None:
    """Call ``write(binary handle)`` on a temporary file beside ``out`` and rename it to
    ``out``; an OSError is one UserError line naming ``out``, and no temporary is left."""
    out = Path(out)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        # os.open with 0o666 lets the umask decide permissions, like any other new file.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, out)
    except OSError as exc:
        raise UserError(str(out), f"cannot write ({exc.strerror or exc})",
                        "choose a writable path") from None
    finally:
        if tmp.exists():
            tmp.unlink()
