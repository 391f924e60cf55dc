"""The Dagster instance settings (``dagster.yaml``) shipped with the package, installed into a DAGSTER_HOME.

``python -m pixel_detective_dagster.app.instance_config [DAGSTER_HOME]`` does what ``make dev`` needs.
"""

from __future__ import annotations

import os
import sys
from importlib.resources import files
from pathlib import Path

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


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    home = args[0] if args else os.environ.get("DAGSTER_HOME")
    if not home:
        sys.exit("usage: python -m pixel_detective_dagster.app.instance_config DAGSTER_HOME (or set $DAGSTER_HOME)")
    print(install_instance_config(Path(home).expanduser().resolve()))


if __name__ == "__main__":
    main()
