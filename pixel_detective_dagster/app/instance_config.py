"""The Dagster instance settings (``dagster.yaml``) shipped with the package, installed into a DAGSTER_HOME.

``python -m pixel_detective_dagster.app.instance_config [DAGSTER_HOME]`` does what ``make dev`` needs.
"""

from __future__ import annotations

import fcntl
import os
import sys
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dagster import DagsterInstance

TEMPLATE = files("pixel_detective_dagster") / "dagster.yaml"


def template_text() -> str:
    return TEMPLATE.read_text(encoding="utf-8")


def install_instance_config(dagster_home: Path) -> Path:
    """Write the template as ``<dagster_home>/dagster.yaml`` unless a non-empty one is already there."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    target = dagster_home / "dagster.yaml"
    if not target.exists() or not target.read_text(encoding="utf-8").strip():
        target.write_text(template_text(), encoding="utf-8")
    return target


def ensure_dagster_home(home: Path) -> Path:
    """Use ``$DAGSTER_HOME`` if set, else ``<data dir>/dagster_home`` so runs show in the UI; installs dagster.yaml."""
    open_instance(home).dispose()
    return Path(os.environ["DAGSTER_HOME"])


def open_instance(home: Path) -> DagsterInstance:
    """The Dagster instance of ``ensure_dagster_home``'s DAGSTER_HOME, opened once (the caller disposes of it).

    The instance's storage is created under a file lock: Dagster's SQLite schema setup is not safe
    when several processes create the same fresh storage at once.
    """
    from dagster import DagsterInstance  # lazy: commands that only read the catalog never import dagster

    dagster_home = Path(os.environ.get("DAGSTER_HOME") or home / "dagster_home").resolve()
    dagster_home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    with (dagster_home / ".pixel_detective_init.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        install_instance_config(dagster_home)
        instance = DagsterInstance.get()
        try:
            unpause_automation_badge(instance)
        except BaseException:
            instance.dispose()  # the caller never gets it to dispose of
            raise
    return instance


def unpause_automation_badge(instance: Any) -> None:
    """A new instance shows "Auto-materialize off" (a pre-sensor daemon flag that defaults to paused) although
    the maps refresh through ``maps_automation_sensor``, which runs by default: record "not paused" once,
    so the UI tells the truth. A choice made later in the UI is kept."""
    from dagster._daemon.asset_daemon import (  # lazy: as DagsterInstance above
        _PRE_SENSOR_ASSET_DAEMON_PAUSED_KEY,
        set_auto_materialize_paused,
    )

    if _PRE_SENSOR_ASSET_DAEMON_PAUSED_KEY not in instance.daemon_cursor_storage.get_cursor_values(
        {_PRE_SENSOR_ASSET_DAEMON_PAUSED_KEY}
    ):
        set_auto_materialize_paused(instance, False)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    home = args[0] if args else os.environ.get("DAGSTER_HOME")
    if not home:
        sys.exit("usage: python -m pixel_detective_dagster.app.instance_config DAGSTER_HOME (or set $DAGSTER_HOME)")
    print(install_instance_config(Path(home).expanduser().resolve()))


if __name__ == "__main__":
    main()
