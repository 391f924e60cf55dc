"""``pixel-detective dev`` (what ``make dev`` runs): ``dagster dev`` on this code location, stopped cleanly.

``dagster dev`` maps SIGTERM to whatever SIGINT does; started in the background (``make dev &``, a
non-interactive shell, a supervisor) it inherits SIGINT *ignored*, and so ignored SIGTERM too. This
launcher starts it in its own process group with SIGINT at its default, forwards SIGINT / SIGTERM as
the graceful SIGINT, and after ``grace`` seconds kills whatever of the group is still running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from pixel_detective_dagster.app.instance_config import ensure_dagster_home
from pixel_detective_dagster.storage.layout import resolve_home

# the code location as the repository's workspace.yaml and pyproject's [tool.dagster] name it
WORKSPACE = """load_from:
  - python_module:
      module_name: pixel_detective_dagster.definitions
      location_name: pixel_detective
"""


def dev_command(dagster_home: Path, host: str, port: int) -> list[str]:
    """``dagster dev`` on a workspace file written into ``dagster_home`` (works from any directory)."""
    workspace = dagster_home / "workspace.yaml"
    workspace.write_text(WORKSPACE)
    dagster = Path(sys.executable).with_name("dagster")
    program = [str(dagster)] if dagster.exists() else [sys.executable, "-m", "dagster"]
    return [*program, "dev", "-w", str(workspace), "--host", host, "--port", str(port)]


def run_dev(host: str, port: int, grace: float = 30.0) -> int:
    """Serve the UI at http://HOST:PORT until SIGINT / SIGTERM; the exit code of ``dagster dev`` (0 when stopped)."""
    dagster_home = ensure_dagster_home(resolve_home())
    print(f"Dagster UI on http://{host}:{port} (DAGSTER_HOME={dagster_home}); Ctrl-C or SIGTERM stops it", flush=True)
    stopping: list[float] = []
    child: subprocess.Popen | None = None

    def stop(signum: int, frame: FrameType | None) -> None:
        if child is not None and not stopping:
            stopping.append(time.monotonic())
            print(f"stopping (signal {signal.Signals(signum).name}) ...", file=sys.stderr, flush=True)
            _signal_group(child.pid, signal.SIGINT)

    # handled here, so the child starts with SIGINT at its default (exec resets handled signals, not ignored ones)
    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    child = subprocess.Popen(dev_command(dagster_home, host, port), start_new_session=True)
    try:
        while child.poll() is None:
            if len(stopping) == 1 and time.monotonic() - stopping[0] > grace:
                stopping.append(time.monotonic())
                print(f"still running after {grace:.0f} s: killing its processes", file=sys.stderr, flush=True)
                _signal_group(child.pid, signal.SIGKILL)
            time.sleep(0.2)
        _signal_group(child.pid, signal.SIGKILL)  # stray run workers or code servers of the group
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if stopping else child.returncode


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
