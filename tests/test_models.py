"""Model resources on CPU with tiny random-weight models loaded through the real loading code."""

from __future__ import annotations

import copy
import dataclasses
import io
import re
import sqlite3
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from dagster import DagsterInstance, build_resources, materialize
from dagster._core.definitions.data_version import StaleStatus
from dagster._utils.test.data_versions import get_stale_status_resolver
from PIL import Image

from pixel_detective_dagster.catalog.scanning import scan_collection
from pixel_detective_dagster.defs.assets import ALL_ASSETS, blip_captions, clip_embeddings, image_manifest, thumbnails
from pixel_detective_dagster.defs.assets.models import model_versioned_assets
from pixel_detective_dagster.defs.resources import resources_from_env
from pixel_detective_dagster.media.imaging import content_hash, decode_rgb
from pixel_detective_dagster.models.batching import AdaptiveBatcher, batch_size_for, probe_batch_size
from pixel_detective_dagster.models.captioner import load_captioner
from pixel_detective_dagster.models.choices import Generation
from pixel_detective_dagster.models.clip import ClipEncoder, load_clip
from pixel_detective_dagster.models.inference import prefetched, run_over_contents
from pixel_detective_dagster.models.registry import ModelLoadError
from pixel_detective_dagster.models.text_tower import PROBES, export_text_tower, load_text_tower
from pixel_detective_dagster.models.tiny import make_tiny_clip
from pixel_detective_dagster.storage.layout import PARTITIONS_NAME

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def clip(tiny_models: dict[str, Path]) -> ClipEncoder:
    return load_clip(str(tiny_models["clip"]), device="cpu")[0]


def out_of_memory_above(limit: int, model, calls: list[int]):
    """Simulates a device that fits at most ``limit`` images: larger batches raise a CUDA-style OOM."""

    def run(pixels: torch.Tensor):
        if len(pixels) > limit:
            raise torch.OutOfMemoryError(f"simulated: {len(pixels)} images do not fit, {limit} do")
        calls.append(len(pixels))
        return model(pixels)

    return run


def test_out_of_memory_splits_the_batch_without_losing_or_duplicating(clip: ClipEncoder) -> None:
    pixels = torch.randn(11, 3, clip.image_size, clip.image_size)
    expected = clip.encode_images(pixels)
    calls: list[int] = []
    batcher = AdaptiveBatcher(ceiling=16, device=CPU, grow_after=2)
    got = batcher.run(out_of_memory_above(3, clip.encode_images, calls), pixels)
    assert sum(calls) == 11 and max(calls) <= 3  # every image once, only batches that fit ran
    assert np.allclose(np.stack(got), expected, atol=1e-5)  # same order, same vectors
    assert batcher.oom_retries >= 2 and batcher.limit <= 4

    # adaptation: after successes the batch grows back towards the ceiling, and shrinks again on OOM
    calls.clear()
    got = batcher.run(out_of_memory_above(3, clip.encode_images, calls), torch.cat([pixels, pixels]))
    assert sum(calls) == 22 and np.allclose(np.stack(got), np.concatenate([expected, expected]), atol=1e-5)
    generous = AdaptiveBatcher(ceiling=8, device=CPU, limit=2, grow_after=1)
    generous.run(clip.encode_images, pixels)
    assert generous.limit == 8 and generous.oom_retries == 0

    with pytest.raises(torch.OutOfMemoryError):  # a single image that does not fit is a real error
        AdaptiveBatcher(ceiling=4, device=CPU).run(out_of_memory_above(0, clip.encode_images, []), pixels[:2])


def test_batch_size_follows_free_memory(clip: ClipEncoder) -> None:
    gib = 1024**3
    assert batch_size_for(8 * gib, 0.1 * gib, ceiling=1024) == 64
    assert batch_size_for(80 * gib, 0.01 * gib, ceiling=256) == 256
    assert batch_size_for(gib // 10, gib, ceiling=256) == 1
    assert probe_batch_size(clip.encode_images, clip.image_size, CPU, 48) == 48  # CPU: the configured size
    assert clip.batcher.ceiling == clip.batcher.limit == 32  # the CPU default


def _mixed_images(folder: Path) -> dict[str, str]:
    """Files of different sizes and modes (RGB, L, RGBA, P+transparency, CMYK, 16-bit) plus one broken file."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    images = {
        "rgb.jpg": (Image.fromarray(rng.integers(0, 255, (480, 640, 3), np.uint8)), "JPEG"),
        "gray.png": (Image.fromarray(rng.integers(0, 255, (300, 50), np.uint8), "L"), "PNG"),
        "alpha.png": (Image.fromarray(rng.integers(0, 255, (90, 120, 4), np.uint8), "RGBA"), "PNG"),
        "cmyk.jpg": (Image.new("CMYK", (200, 150), (10, 200, 30, 5)), "JPEG"),
        "deep.png": (Image.fromarray(rng.integers(0, 65535, (70, 70), np.uint16)), "PNG"),
        "tiny.png": (Image.new("RGB", (8, 8), (255, 0, 0)), "PNG"),
    }
    palette = Image.new("P", (100, 60), 1)
    palette.info["transparency"] = 0
    images["palette.gif"] = (palette, "GIF")
    items = {}
    for name, (img, fmt) in images.items():
        buffer = io.BytesIO()
        img.save(buffer, fmt)
        (folder / name).write_bytes(buffer.getvalue())
        items[content_hash(buffer.getvalue())] = name
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    items[content_hash((folder / "broken.jpg").read_bytes())] = "broken.jpg"
    assert Image.open(folder / "deep.png").mode.startswith("I")
    return items


def test_mixed_sizes_and_modes_in_one_batch(clip: ClipEncoder, tiny_models: dict[str, Path], tmp_path: Path) -> None:
    items = _mixed_images(tmp_path / "mixed")
    root = tmp_path / "mixed"
    calls: list[int] = []
    batcher = AdaptiveBatcher(ceiling=8, device=CPU)
    outcome = run_over_contents(
        root,
        list(items.items()),
        {},
        clip.prepare,
        lambda pixels: batcher.run(out_of_memory_above(3, clip.encode_images, calls), pixels),
        batch_size=8,
        workers=3,
    )
    assert set(outcome.failures.values()) and items[next(iter(outcome.failures))] == "broken.jpg"
    assert len(outcome.results) == 7 and sum(calls) == 7
    for content, name in items.items():  # each vector belongs to its own image, whatever the batching
        if name != "broken.jpg":
            data = (root / name).read_bytes()
            assert clip.prepare(data).dtype == torch.uint8  # decoder threads hand over uint8, normalised per batch
            alone = clip.encode_images(clip.prepare(data)[None])
            unsplit = clip.encode_images(clip.preprocess(decode_rgb(data, clip.image_size))[None])  # open_clip's own
            assert np.allclose(outcome.results[content], alone[0], atol=1e-4), name
            assert np.allclose(alone, unsplit, atol=1e-5), name

    for kind in ("blip", "git"):  # two captioner architectures through the same generic transformers path
        captioner = load_captioner(str(tiny_models[kind]), device="cpu")[0]
        captions = run_over_contents(
            root,
            list(items.items()),
            {},
            captioner.prepare,
            captioner.caption_batch,
            batch_size=4,
        )
        assert len(captions.results) == 7 and len(captions.failures) == 1
        assert all(text and text[0].isupper() and text == text.strip() for text in captions.results.values())


def test_prefetch_never_waits_on_one_slow_decode() -> None:
    def prepare(content: str, _: str) -> torch.Tensor:
        time.sleep(0.5 if content == "slow" else 0.01)
        return torch.zeros(1)

    items = [("slow", ""), *[(f"fast{i}", "") for i in range(5)]]
    waited = [0.0]
    batches = list(prefetched(items, prepare, batch_size=2, workers=3, waited=waited))
    assert "slow" not in [h for h, _ in batches[0]]  # finished images go first
    assert sorted(h for b in batches for h, _ in b) == sorted(h for h, _ in items)
    assert waited[0] > 0


def test_captions_batched_with_configurable_generation(
    tiny_models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIXEL_DETECTIVE_CAPTION_MODEL", str(tiny_models["blip"]))
    monkeypatch.setenv("PIXEL_DETECTIVE_DEVICE", "cpu")
    monkeypatch.setenv("PIXEL_DETECTIVE_CAPTION_BEAMS", "2")
    monkeypatch.setenv("PIXEL_DETECTIVE_CAPTION_MAX_TOKENS", "6")
    monkeypatch.setenv("PIXEL_DETECTIVE_CAPTION_PROMPT", "a photo of")
    with build_resources(resources_from_env()) as resources:
        captioner, _loaded = resources.caption_model.load()
    assert captioner.generation == Generation(6, 2, "a photo of")
    assert re.search(r"^transformers:blip:blip:[0-9a-f]{12}:fp32:beam2-max6-prompt[0-9a-f]{8}$", captioner.identity)
    greedy = captioner.with_generation(Generation(max_new_tokens=6))
    assert greedy.identity != captioner.identity and greedy.batcher is captioner.batcher
    pixels = torch.randn(3, 3, captioner.image_size, captioner.image_size)
    for texts in (captioner.caption_batch(pixels), greedy.caption_batch(pixels)):
        assert len(texts) == 3 and all(
            t and len(t.split()) <= 6 and not t.lower().startswith("a photo of") for t in texts
        )


def test_load_once_and_errors_name_the_setting(
    tiny_models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = load_clip(str(tiny_models["clip"]), device="cpu")
    again = load_clip(str(tiny_models["clip"]), device="cpu")
    assert again[0] is first[0] and again[2] is True and again[1] == first[1]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="PIXEL_DETECTIVE_CLIP_MODEL"):
        load_clip(str(tmp_path / "empty"), device="cpu")
    with pytest.raises(ModelLoadError, match="PIXEL_DETECTIVE_CLIP_MODEL"):
        load_clip("hf-hub:nobody/no-such-clip-model", device="cpu")
    with pytest.raises(ModelLoadError, match="PIXEL_DETECTIVE_CAPTION_MODEL"):
        load_captioner(str(tmp_path / "empty"), device="cpu")
    with pytest.raises(ValueError, match="PIXEL_DETECTIVE_CLIP_PRECISION"):
        load_clip(str(tiny_models["clip"]), device="cpu", precision="fp16")


def test_quantized_cpu_model_has_its_own_identity(clip: ClipEncoder, tiny_models: dict[str, Path]) -> None:
    quantized = load_clip(str(tiny_models["clip"]), device="cpu", precision="int8")[0]
    bf16 = load_clip(str(tiny_models["clip"]), device="cpu", precision="bf16")[0]
    assert quantized.identity.endswith(":int8-dynamic") and bf16.identity.endswith(":bf16-autocast")
    assert len({clip.identity, quantized.identity, bf16.identity}) == 3
    pixels = torch.randn(4, 3, clip.image_size, clip.image_size)
    for other in (quantized, bf16):  # close to fp32, but not the same vectors: never mixed in one cache key
        agreement = (clip.encode_images(pixels) * other.encode_images(pixels)).sum(axis=1)
        assert agreement.min() > 0.9


def _status(instance: DagsterInstance, assets: list, key: str) -> dict[str, StaleStatus]:
    resolver = get_stale_status_resolver(instance, assets)
    return {
        a.key.path[-1]: resolver.get_status(a.key, key)
        for a in (image_manifest, thumbnails, clip_embeddings, blip_captions)
    }


def test_model_change_marks_only_model_assets_stale(
    env: Path, photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance = DagsterInstance.ephemeral()
    with build_resources(resources_from_env()) as resources:
        resources.storage.catalog.register_collection("pics", photos)
        key = scan_collection(resources.storage.catalog, "pics").new_batches[0]
    instance.add_dynamic_partitions(PARTITIONS_NAME, [key])
    selection = [image_manifest, thumbnails, clip_embeddings, blip_captions]

    def run(assets: list, chosen: list) -> dict[str, str]:
        result = materialize(
            assets,
            selection=[a.key for a in chosen],
            partition_key=key,
            instance=instance,
            resources=resources_from_env(),
        )
        assert result.success
        return {
            str(e.asset_key.path[-1]): e.step_materialization_data.materialization.tags.get("dagster/data_version")
            for e in result.get_asset_materialization_events()
        }

    before_assets = model_versioned_assets(ALL_ASSETS, resources_from_env())
    first = run(before_assets, selection)
    assert set(_status(instance, before_assets, key).values()) == {StaleStatus.FRESH}

    other = make_tiny_clip(tmp_path / "other_clip")  # same architecture, other weights
    monkeypatch.setenv("PIXEL_DETECTIVE_CLIP_MODEL", str(other))
    after_assets = model_versioned_assets(ALL_ASSETS, resources_from_env())
    codes = [
        next(a for a in assets if a.key == clip_embeddings.key).code_versions_by_key[clip_embeddings.key]
        for assets in (before_assets, after_assets)
    ]
    assert codes[0] != codes[1]
    status = _status(instance, after_assets, key)
    assert status == {
        "image_manifest": StaleStatus.FRESH,
        "thumbnails": StaleStatus.FRESH,
        "clip_embeddings": StaleStatus.STALE,
        "blip_captions": StaleStatus.FRESH,
    }

    second = run(after_assets, [clip_embeddings])  # only the stale asset re-materializes
    assert second["clip_embeddings"] != first["clip_embeddings"]
    assert set(_status(instance, after_assets, key).values()) == {StaleStatus.FRESH}
    with build_resources(resources_from_env()) as resources:
        frame = pd.read_parquet(resources.storage.layout.batch_artifact(key, "clip_embeddings"))
        new_identity = resources.clip_model.load()[0].identity
    assert set(frame["model"]) == {new_identity} and "other_clip" in new_identity
    with sqlite3.connect(env / "features.sqlite") as conn:  # old vectors kept under their own identity, not reused
        per_model = dict(conn.execute("SELECT model, COUNT(*) FROM embeddings GROUP BY model").fetchall())
    assert len(per_model) == 2 and per_model[new_identity] == len(frame)


def test_onnx_engine_agrees_with_torch_and_reuses_its_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIXEL_DETECTIVE_HOME", str(tmp_path / "home"))
    source = str(make_tiny_clip(tmp_path / "clip"))
    reference = load_clip(source, device="cpu", engine="torch")[0]
    fast = load_clip(source, device="cpu", engine="onnx")[0]
    assert (reference.engine, fast.engine) == ("torch", "onnx") and fast.identity == reference.identity
    pixels = torch.randn(5, 3, fast.image_size, fast.image_size)
    assert (reference.encode_images(pixels) * fast.encode_images(pixels)).sum(axis=1).min() >= 0.9999
    texts = ["a cat", "a red car on a wet street at night", ""]
    assert (reference.encode_texts(texts) * fast.encode_texts(texts)).sum(axis=1).min() >= 0.9999
    exports = sorted((tmp_path / "home" / "models" / "onnx").rglob("*.onnx"))
    assert [p.name for p in exports] == ["image.onnx", "text.onnx"]
    stamps = [p.stat().st_mtime_ns for p in exports]
    lazy = load_clip(source, device="cpu", engine="auto", batch_size=3)[0]  # another process would load like this
    assert lazy.engine == "pending"  # nothing exported or opened until the first image batch
    lazy.encode_images(pixels)
    assert lazy.engine == "onnx" and [p.stat().st_mtime_ns for p in exports] == stamps  # the export was reused


def test_onnx_engine_refuses_an_export_that_disagrees(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIXEL_DETECTIVE_HOME", str(tmp_path / "home"))
    first, second = (str(make_tiny_clip(tmp_path / name)) for name in ("first", "second"))  # other random weights
    load_clip(first, device="cpu", engine="onnx")
    other = load_clip(second, device="cpu", engine="torch")[0]
    folders = list((tmp_path / "home" / "models" / "onnx").iterdir())
    from pixel_detective_dagster.models.onnx_engine import export_dir

    wrong = export_dir(tmp_path / "home" / "models", other.identity)
    wrong.mkdir(parents=True)
    (wrong / "image.onnx").write_bytes((folders[0] / "image.onnx").read_bytes())  # the first model's graph
    with pytest.raises(ModelLoadError, match="disagrees with torch"):
        load_clip(second, device="cpu", engine="onnx")
    assert not (wrong / "image.onnx").exists()  # the bad export is removed, the next load makes a good one
    assert load_clip(second, device="cpu", engine="onnx", batch_size=5)[0].engine == "onnx"
    with pytest.raises(ModelLoadError, match="fp32 on the CPU only"):
        load_clip(second, device="cpu", precision="int8", engine="onnx")
    assert load_clip(second, device="cpu", precision="int8")[0].engine == "torch"  # auto: int8 stays on torch


def test_caption_inputs_leave_the_decoder_threads_as_uint8(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    items = _mixed_images(tmp_path / "mixed")
    captioner = load_captioner(str(tiny_models["blip"]), device="cpu")[0]
    assert captioner.split is not None  # BLIP: resize + rescale + normalise, split like CLIP's
    for name in items.values():
        if name == "broken.jpg":
            continue
        data = (tmp_path / "mixed" / name).read_bytes()
        pixels = captioner.prepare(data)
        whole = captioner.pixel_values(decode_rgb(data, captioner.image_size))  # the processor's own path
        assert pixels.dtype == torch.uint8 and pixels.shape == whole.shape
        level = 1 / 255 / float(captioner.split.std.min())  # one uint8 step, normalised
        difference = (captioner.split.normalise(pixels[None])[0] - whole).abs()
        assert difference.mean() < level and difference.max() < 8 * level, name  # resampling differences only
    git = load_captioner(str(tiny_models["git"]), device="cpu")[0]
    assert git.split is None or git.prepare(data).dtype == torch.uint8  # other processors keep their own path


def test_text_tower_gives_the_models_vectors_without_torch(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    encoder, _, _ = load_clip(str(tiny_models["clip"]), device="cpu")
    tower = export_text_tower(encoder, tmp_path / "tower")
    assert tower is not None and tower.identity == encoder.identity and tower.random_weights
    texts = [*PROBES, "a " * 200, "", "ÉCOLE   d'été\n\tno. 5"]  # too long (truncated), empty, accents + spacing
    assert np.array_equal(tower.tokens(texts), encoder.tokenizer(texts).numpy())
    np.testing.assert_allclose(tower.encode_texts(texts), encoder.encode_texts(texts), atol=1e-5)
    assert load_text_tower(tmp_path / "nothing") is None
    # the causal tower runs on the tokens through the end-of-text token only: 3 positions for one word
    assert tower.prefix and tower.model_input(["cat"]).shape == (1, 3) and tower.model_input(texts).shape[1] == 77
    np.testing.assert_allclose(tower.encode_texts(["cat"]), encoder.encode_texts(["cat"]), atol=1e-5)


def test_a_text_tower_pooled_elsewhere_runs_on_the_whole_context(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    shared, _, _ = load_clip(str(tiny_models["clip"]), device="cpu")  # loaded once per process: change a copy
    encoder = dataclasses.replace(shared, model=copy.deepcopy(shared.model), image_tower=None, text_tower=None)
    encoder.model.text_pool_type = "last"  # reads the last position: the padding matters, no prefix is exact
    tower = export_text_tower(encoder, tmp_path / "tower")
    assert tower is not None and not tower.prefix and tower.model_input(["cat"]).shape == (1, 77)
    np.testing.assert_allclose(tower.encode_texts(["cat", "a dog"]), encoder.encode_texts(["cat", "a dog"]), atol=1e-5)
