"""Starting Gmsh without losing the command line's SIGTERM handler."""

from __future__ import annotations

import signal
import threading

__all__ = ["initialize_gmsh"]


def initialize_gmsh() -> None:
    """``gmsh.initialize(interruptible=False)``, then put back the Python SIGTERM handler:
    Gmsh resets SIGTERM to the default action (end the process at once) when it starts, which
    would undo ``cathodefem``'s handler (stop like Ctrl-C and keep what was finished)."""
    import gmsh

    handler = signal.getsignal(signal.SIGTERM)
    gmsh.initialize(interruptible=False)
    if callable(handler) and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
