"""The ``pixel-detective`` executable: settings for a short-lived command-line process, ``cli.main``, a fast exit.

Measured on a fresh 300-image ingest whose contents were cached (2 cores; benchmarks/README.md, "The
executable's process"), each of these cost CPU-seconds that no result needed:

- numpy's OpenBLAS starts a thread per core and spin-waits on them after every call, for matrices of a few
  hundred rows (the map, the clusters, the duplicate groups): one thread saved 0.4 CPU-s. The variable must
  be set before numpy loads OpenBLAS, so ``cli`` is imported after it; a value the user set is kept.
- Python's cyclic garbage collector ran over Dagster's and the asset graph's import-time objects again and
  again: a higher first threshold saved 0.4 CPU-s; cyclic garbage is still collected, in larger steps.
- The interpreter's shutdown freed every module and object one by one, 0.65 CPU-s after the work was
  written and closed: ``exit_now`` runs the exit handlers the program registered (logging's flush,
  temporary-directory clean-up, multiprocessing's children), flushes the output and ends the process.
  While a non-daemon thread still runs, it exits normally, which waits for it.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
import threading
from typing import NoReturn

BLAS_THREADS = {"OPENBLAS_NUM_THREADS": "1"}
GC_THRESHOLDS = (10_000, 20, 20)  # Python's default is (700, 10, 10)


def run() -> NoReturn:
    """``pixel-detective``: the process settings above, the command, then ``exit_now``."""
    for name, value in BLAS_THREADS.items():
        os.environ.setdefault(name, value)
    gc.set_threshold(*GC_THRESHOLDS)
    from pixel_detective_dagster.app.cli import main  # after the environment: numpy reads it when it loads

    exit_now(main())


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


if __name__ == "__main__":
    run()
