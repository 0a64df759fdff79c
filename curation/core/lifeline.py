"""Child processes that die with their parent: nothing of a killed run goes on writing (Linux; elsewhere a no-op).

`die_with_parent(parent)` asks the kernel for SIGKILL when the parent dies (PR_SET_PDEATHSIG). It must run in the child,
which must have been forked by the parent's thread that outlives it (the kernel ties the signal to that thread).
Should the parent be gone already (it died between the fork and the call), the child exits at once.
"""

from __future__ import annotations

import os
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int | None = None) -> bool:
    """SIGKILL for this process when its parent dies; exits now when `parent` (a pid) is no longer the parent.
    Returns whether the kernel took the request."""
    try:
        import ctypes

        ok = ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL) == 0
    except (OSError, AttributeError):
        return False
    if parent is not None and os.getppid() != parent:
        os._exit(1)
    return ok
