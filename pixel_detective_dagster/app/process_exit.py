"""End a finished command's process without tearing the interpreter down.

A fresh ``pixel-detective ingest`` has imported Dagster, pandas, SciPy, scikit-learn and ONNX Runtime;
the interpreter's normal shutdown then frees every module and object one by one, which cost 0.65
CPU-seconds after a 300-image ingest (more than a scan of an unchanged folder costs in all). By then
the work is written and closed, so ``exit_now`` runs the exit handlers the program registered
(logging's flush, temporary-directory clean-up, multiprocessing's children), flushes the output and
ends the process. While a non-daemon thread still runs, it exits normally, which waits for it.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import NoReturn


def exit_now(code: int) -> NoReturn:
    """Exit with ``code`` after the exit handlers, skipping the interpreter's teardown when nothing still runs."""
    main = threading.main_thread()
    if any(t is not main and t.is_alive() and not t.daemon for t in threading.enumerate()):
        sys.exit(code)
    atexit._run_exitfuncs()  # what a normal exit runs before its teardown
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (``| head``) or stream: nothing left to write to
            code = code or 120  # as the interpreter reports an unflushable stdout
    os._exit(code)
