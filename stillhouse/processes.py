"""Child processes that die with their parent (Linux), so a SIGKILLed worker or master
does not leave a ComfyUI or a worker process running on the host."""

from __future__ import annotations

import ctypes
import ctypes.util
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` asking the kernel to SIGTERM the child when its parent dies.

    The kernel sends it when the thread that started the child exits, so start such
    children from a long-lived thread (the main thread, or the event loop's).
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

    def arrange() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return arrange
