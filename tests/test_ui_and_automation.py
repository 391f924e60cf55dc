"""What the UI shows (contact sheet, cluster map, owners/kinds/groups) and the maps refreshing themselves."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
from dagster import AssetKey, DagsterInstance, evaluate_automation_conditions, materialize
from PIL import Image

from pixel_detective_dagster.defs.assets import ALL_ASSETS
from pixel_detective_dagster.defs.assets.ui_metadata import cluster_map_markdown, contact_sheet_markdown, display_labels
from pixel_detective_dagster.defs.resources import resources_from_env
from pixel_detective_dagster.storage.layout import PARTITIONS_NAME

MAX_PICTURE_BYTES = 300_000
UPSTREAM = ["image_manifest", "thumbnails", "clip_embeddings", "blip_captions", "vector_index", "caption_index"]
MAPS = ["umap_projection", "image_clusters", "duplicate_groups"]


def embedded_picture(markdown: str) -> Image.Image:
    match = re.search(r"data:image/(png|jpeg);base64,([A-Za-z0-9+/=]+)\)", markdown)
    assert match, markdown[:200]
    data = base64.b64decode(match[2])
    assert len(markdown) < MAX_PICTURE_BYTES
    image = Image.open(io.BytesIO(data))
    assert image.format == match[1].upper()
    return image


def test_cluster_map_colours_each_cluster_and_stays_small() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10]], np.float32)
    labels = np.repeat([0, 1, 2], 30_000)
    xy = centres[labels] + rng.normal(size=(len(labels), 2)).astype(np.float32)
    labels[:500] = -1
    markdown = cluster_map_markdown(xy, labels, {0: "beach dog"}).value
    image = embedded_picture(markdown).convert("RGB")
    assert "20000 of 90000 points" in markdown  # large collections are sampled
    colours = {c for _, c in image.getcolors(1 << 16)}
    assert {(31, 119, 180), (255, 127, 14), (44, 160, 44), (190, 190, 190)} <= colours  # 3 clusters + noise
    assert cluster_map_markdown(np.zeros((0, 2)), np.zeros(0, int)).value == "No points to draw."
    assert display_labels(np.array([-1, -1]), np.array([0, 1])).tolist() == [0, 1]


def test_contact_sheet_tiles_readable_thumbnails(tmp_path: Path) -> None:
    paths = []
    for i in range(10):
        paths.append(tmp_path / f"{i}.webp")
        Image.new("RGB", (64, 48), (i * 25, 0, 0)).save(paths[-1])
    paths.append(tmp_path / "missing.webp")
    image = embedded_picture(contact_sheet_markdown(paths).value)
    assert image.size == (8 * 72, 2 * 72)  # 10 readable tiles, 8 per row
    assert contact_sheet_markdown([]).value == "No thumbnails in this batch."


def test_assets_read_well_in_the_graph(env: Path) -> None:
    from pixel_detective_dagster.definitions import defs  # imported under the test environment (EnvVar resources)

    graph = defs.resolve_asset_graph()
    groups = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.owners == ["team:pixel-detective"] and node.tags["stage"] == node.group_name
        assert node.kinds and node.description
        groups.setdefault(node.group_name, set()).add(key.to_user_string())
    assert groups == {
        "ingest": {"image_manifest", "thumbnails"},
        "models": {"clip_embeddings", "blip_captions"},
        "index": {"vector_index", "caption_index"},
        "maps": set(MAPS),
    }
    assert "pytorch" in graph.get(AssetKey("clip_embeddings")).kinds
    assert "qdrant" in graph.get(AssetKey("vector_index")).kinds
    assert defs.resolve_sensor_def("maps_automation_sensor").default_status.value == "RUNNING"


def test_maps_refresh_themselves_after_a_batch_reaches_the_index(registered_batches: list[str]) -> None:
    from pixel_detective_dagster.definitions import defs

    instance = DagsterInstance.ephemeral()
    (key,) = registered_batches

    def run(assets: list[str]) -> bool:
        selection = [AssetKey(a) for a in assets]
        return materialize(
            ALL_ASSETS, instance=instance, resources=resources_from_env(), selection=selection, partition_key=key
        ).success

    instance.add_dynamic_partitions(PARTITIONS_NAME, [key])
    tick = evaluate_automation_conditions(defs, instance)  # nothing is there yet: nothing to refresh
    assert tick.total_requested == 0

    assert run(UPSTREAM)
    tick = evaluate_automation_conditions(defs, instance, cursor=tick.cursor)
    assert {a: tick.get_requested_partitions(AssetKey(a)) for a in MAPS} == {a: {key} for a in MAPS}

    assert run(MAPS)
    tick = evaluate_automation_conditions(defs, instance, cursor=tick.cursor)
    assert tick.total_requested == 0  # refreshed once, not again

    thumbnails = instance.get_latest_materialization_event(AssetKey("thumbnails")).asset_materialization
    clusters = instance.get_latest_materialization_event(AssetKey("image_clusters")).asset_materialization
    sheet = embedded_picture(thumbnails.metadata["contact_sheet"].value)
    assert sheet.size == (6 * 72, 72)  # the six photos of the batch
    embedded_picture(clusters.metadata["pics/map"].value)
    assert str(clusters.metadata["pics/artifact"].value).endswith("image_clusters.parquet")
