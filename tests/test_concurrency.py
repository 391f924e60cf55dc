"""Ingests racing each other and the sensor: no corruption, no duplicate points, no lost files."""

from __future__ import annotations

from pathlib import Path

from dagster import DagsterInstance, build_resources, build_sensor_context
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_START_TAG
from inspection import catalog_rows, index_points
from processes import Launcher, ingest_reaching

from pixel_detective_dagster.app.instance_config import ensure_dagster_home
from pixel_detective_dagster.catalog.scanning import scan_collection
from pixel_detective_dagster.defs.resources import resources_from_env
from pixel_detective_dagster.defs.sensors import image_folder_sensor
from pixel_detective_dagster.samples.images import generate_folder
from pixel_detective_dagster.storage.layout import PARTITIONS_NAME


def assert_one_point_per_unique_content(home: Path, collection: str, expected: int) -> None:
    rows = catalog_rows(home, collection)
    assert all(status == "indexed" for status, _, _ in rows.values()), rows
    contents = {h for _, _, h in rows.values()}
    points = index_points(collection)
    assert len(contents) == expected and set(points) == contents
    assert sorted(path for p in points.values() for path in p["paths"]) == sorted(rows)


def test_two_collections_and_two_ingests_of_one_partition_at_once(
    env: Path, tmp_path: Path, launcher: Launcher
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    generate_folder(first, 8, "small")
    generate_folder(second, 8, "small", start=8)
    (second / "same_as_first.jpg").write_bytes(min(first.glob("*.jpg")).read_bytes())
    ensure_dagster_home(env)
    with build_resources(resources_from_env()) as resources:  # both "first" ingests find this batch unfinished
        resources.storage.catalog.register_collection("first", first)
        assert scan_collection(resources.storage.catalog, "first").new_batches == ["first-000001"]
    pids = [
        launcher.start_ingest(first, "first"),
        launcher.start_ingest(first, "first"),
        launcher.start_ingest(second, "second"),
    ]
    for pid in pids:
        assert launcher.wait(pid) == 0, launcher.output(pid)
    runs = DagsterInstance.get().get_runs()
    # the second ingest of "first" waited for the first one instead of redoing its batch
    assert sorted(r.tags[ASSET_PARTITION_RANGE_START_TAG] for r in runs) == ["first-000001", "second-000001"]
    assert_one_point_per_unique_content(env, "first", 8)
    assert_one_point_per_unique_content(env, "second", 9)  # the same content in two collections is two points
    with build_resources(resources_from_env()) as resources:
        assert resources.storage.catalog.batch_keys("first") == ["first-000001"]  # the race claimed files once
    assert set(DagsterInstance.get().get_dynamic_partitions(PARTITIONS_NAME)) == {"first-000001", "second-000001"}


def test_sensor_tick_while_a_run_of_the_same_collection_is_in_flight(
    env: Path, tmp_path: Path, launcher: Launcher
) -> None:
    folder = tmp_path / "live"
    generate_folder(folder, 8, "small")
    ensure_dagster_home(env)
    instance = DagsterInstance.get()
    pid, _ = ingest_reaching(launcher, folder, "live", "thumbnails")

    generate_folder(folder, 2, "small", start=20)  # arrives while the first batch is being processed
    with build_resources(resources_from_env()) as resources:
        context = build_sensor_context(instance=instance, resources={"storage": resources.storage})
        result = image_folder_sensor(context)
        assert [r.partition_key for r in result.run_requests] == ["live-000002"]  # never the in-flight batch
        assert len(resources.storage.catalog.batch_files("live-000002")) == 2
    for request in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(PARTITIONS_NAME, list(request.partition_keys))
    assert launcher.wait(pid) == 0, launcher.output(pid)

    # what the sensor's run request does: materialize the new batch (ingest runs every unfinished batch)
    pid = launcher.start_ingest(folder, "live")
    assert launcher.wait(pid) == 0, launcher.output(pid)
    assert_one_point_per_unique_content(env, "live", 10)
