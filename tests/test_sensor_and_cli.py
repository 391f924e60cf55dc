"""The folder sensor (small cursor, new/changed/deleted files) and `dagster asset materialize` on a batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dagster import DagsterInstance, build_resources, build_sensor_context

from pixel_detective_dagster.defs.resources import resources_from_env
from pixel_detective_dagster.defs.sensors import image_folder_sensor
from pixel_detective_dagster.samples.images import generate_folder
from pixel_detective_dagster.storage.layout import PARTITIONS_NAME


def evaluate(instance: DagsterInstance, cursor: str | None):
    with build_resources(resources_from_env()) as resources:
        context = build_sensor_context(instance=instance, cursor=cursor, resources={"storage": resources.storage})
        result = image_folder_sensor(context)
    if hasattr(result, "dynamic_partitions_requests"):
        for request in result.dynamic_partitions_requests:
            instance.add_dynamic_partitions(PARTITIONS_NAME, list(request.partition_keys))
        return result, result.cursor
    return result, context.cursor


def test_sensor_detects_changes_with_a_small_cursor(env: Path, tmp_path: Path) -> None:
    folder = tmp_path / "library"
    generate_folder(folder, 300, "small", fmt="png")
    with build_resources(resources_from_env()) as resources:
        resources.storage.catalog.register_collection("lib", folder)
    instance = DagsterInstance.ephemeral()

    result, cursor = evaluate(instance, None)
    assert [r.partition_key for r in result.run_requests] == ["lib-000001"]
    assert len(cursor) < 200  # nothing per file in the cursor

    result, cursor = evaluate(instance, cursor)  # nothing changed
    assert not getattr(result, "run_requests", None)

    generate_folder(folder, 1, "small", start=500)  # new file
    (min(folder.glob("*.png"))).unlink()  # deleted file
    changed = sorted(folder.glob("*.png"))[5]
    changed.write_bytes(changed.read_bytes() + b"\0")  # changed size
    result, cursor = evaluate(instance, cursor)
    assert [r.partition_key for r in result.run_requests] == ["lib-000002"]
    assert len(cursor) < 200
    with build_resources(resources_from_env()) as resources:
        kinds = sorted(c.kind for c in resources.storage.catalog.batch_files("lib-000002"))
    assert kinds == ["delete", "upsert", "upsert"]
    assert set(instance.get_dynamic_partitions(PARTITIONS_NAME)) == {"lib-000001", "lib-000002"}


def test_dagster_asset_materialize_cli_for_a_batch(env: Path, photos: Path) -> None:
    from pixel_detective_dagster.app.instance_config import ensure_dagster_home

    with build_resources(resources_from_env()) as resources:
        resources.storage.catalog.register_collection("pics", photos)
        from pixel_detective_dagster.catalog.scanning import scan_collection

        keys = scan_collection(resources.storage.catalog, "pics").new_batches
    ensure_dagster_home(env)
    DagsterInstance.get().add_dynamic_partitions(PARTITIONS_NAME, keys)
    dagster = Path(sys.executable).parent / "dagster"
    command = [
        str(dagster),
        "asset",
        "materialize",
        "-m",
        "pixel_detective_dagster.definitions",
        "--select",
        "*",
        "--partition",
        keys[0],
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy(), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "RUN_SUCCESS" in done.stderr or "RUN_SUCCESS" in done.stdout
    with build_resources(resources_from_env()) as resources:
        assert resources.vector_index.for_collection(resources.storage.layout, "pics").count() == 6
