"""Search does not wait for captions: the index is written from the embeddings, captions reach the points later;
captions are a per-collection setting (off, the configured model, or another model)."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance, build_resources, materialize
from inspection import index_points

from pixel_detective_dagster.app.cli import main
from pixel_detective_dagster.app.ingest import ingest
from pixel_detective_dagster.app.search import SearchRequest, run_search
from pixel_detective_dagster.catalog.captions import OFF, captions_choice, parse_captions, set_captions
from pixel_detective_dagster.defs.assets import ALL_ASSETS
from pixel_detective_dagster.defs.resources import resources_from_env
from pixel_detective_dagster.index.health import points_match_catalog
from pixel_detective_dagster.models.tiny import make_tiny_blip
from pixel_detective_dagster.storage.layout import PARTITIONS_NAME

BEFORE_CAPTIONS = ["image_manifest", "thumbnails", "clip_embeddings", "vector_index"]


def step_order(run_id: str) -> list[str]:
    records = DagsterInstance.get().all_logs(run_id, of_type=DagsterEventType.STEP_SUCCESS)
    return [r.step_key for r in records]


def materialization(instance: DagsterInstance, asset: str) -> dict:
    event = instance.get_latest_materialization_event(AssetKey(asset)).asset_materialization
    return {name: value.value for name, value in event.metadata.items()}


def test_parse_captions_setting() -> None:
    assert parse_captions("off") == OFF and parse_captions(" OFF ") == OFF
    assert parse_captions("default") is None
    assert parse_captions("Salesforce/blip-image-captioning-base") == "Salesforce/blip-image-captioning-base"
    with pytest.raises(ValueError, match="--captions takes"):
        parse_captions("  ")


def test_index_is_written_before_captions_and_captions_join_the_same_points(env: Path, photos: Path) -> None:
    report = ingest(photos, "pics")
    assert report.success
    order = step_order(report.run_id)
    assert order.index("vector_index") < order.index("blip_captions") < order.index("caption_index")
    assert order.index("caption_index") < order.index("image_clusters")  # cluster names use the captions
    points = index_points("pics")
    assert len(points) == 6 and all(p["caption"] and p["caption_model"] for p in points.values())
    caption = next(iter(points.values()))["caption"]
    hits = run_search(SearchRequest("pics", caption=caption.split()[0])).results
    assert hits  # the BM25 vector was added to the existing points

    again = ingest(photos, "pics")  # nothing new: nothing rewritten
    assert again.success and not again.batches
    assert index_points("pics").keys() == points.keys()


def test_search_works_before_captions_land_and_reruns_are_idempotent(registered_batches: list[str]) -> None:
    (key,) = registered_batches
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(PARTITIONS_NAME, [key])

    def run(assets: list[str]) -> None:
        selection = [AssetKey(a) for a in assets]
        result = materialize(
            ALL_ASSETS, instance=instance, resources=resources_from_env(), selection=selection, partition_key=key
        )
        assert result.success

    run(BEFORE_CAPTIONS)
    points = index_points("pics")
    assert len(points) == 6 and not any(p.get("caption") for p in points.values())
    for request in (
        SearchRequest("pics", text="a photo"),
        SearchRequest("pics", text="a photo", hybrid=True),
        SearchRequest("pics", caption="photo"),
    ):
        response = run_search(request)
        assert request.caption or len(response.results) == 6  # CLIP (and hybrid) rank every point already
    assert run_search(SearchRequest("pics", caption="photo")).results == []  # no caption matches yet

    run(["blip_captions", "caption_index"])
    captioned = index_points("pics")
    assert captioned.keys() == points.keys()
    assert [p["id"] for p in captioned.values()] == [p["id"] for p in points.values()]  # same points, none added
    assert all(p["caption"] for p in captioned.values())
    assert materialization(instance, "caption_index")["captions_added"] == 6

    run(["caption_index"])  # a re-run changes nothing
    assert materialization(instance, "caption_index")["captions_added"] == 0
    run(["vector_index"])  # re-indexing the batch keeps the captions its points already have
    assert {h: p["caption"] for h, p in index_points("pics").items()} == {h: p["caption"] for h, p in captioned.items()}
    with build_resources(resources_from_env()) as r:
        index = r.vector_index.for_collection(r.storage.layout, "pics")
        assert points_match_catalog(r.storage.catalog, "pics", index.all_points()).passed
        hybrid = run_search(SearchRequest("pics", text=next(iter(captioned.values()))["caption"], hybrid=True))
        assert len(hybrid.results) == 6


def test_captions_off_per_collection(env: Path, photos: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ingest", str(photos), "--collection", "pics", "--captions", "off"]) == 0
    points = index_points("pics")
    assert len(points) == 6 and not any(p.get("caption") for p in points.values())
    instance = DagsterInstance.get()
    assert materialization(instance, "blip_captions")["captions/pics"] == "off"
    assert materialization(instance, "blip_captions")["computed"] == 0
    assert main(["status", "--collection", "pics"]) == 0
    assert "captions: off" in capsys.readouterr().out.replace("  ", "")
    assert main(["captions", "--collection", "pics", "default"]) == 0
    assert "pics: captions default (" in capsys.readouterr().out


def test_collection_captions_with_another_model(env: Path, photos: Path, tmp_path: Path) -> None:
    other = make_tiny_blip(tmp_path / "cheaper_blip")
    report = ingest(photos, "pics", captions=str(other))
    assert report.success
    points = index_points("pics")
    assert all("cheaper_blip" in p["caption_model"] for p in points.values())
    with build_resources(resources_from_env()) as r:
        assert captions_choice(r.storage.catalog, "pics") == str(other)
        set_captions(r.storage.catalog, "pics", "default")
        assert captions_choice(r.storage.catalog, "pics") is None
    blip = materialization(DagsterInstance.get(), "blip_captions")
    assert blip["captions/pics"] == str(other) and "cheaper_blip" in str(blip["model"])
