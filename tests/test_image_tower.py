"""The recorded torch-free CLIP image tower: same inputs and embeddings as open_clip, and an ingest without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from dagster import build_resources
from PIL import Image

from pixel_detective_dagster.app.ingest import ingest
from pixel_detective_dagster.defs.resources import resources_from_env
from pixel_detective_dagster.models import image_tower
from pixel_detective_dagster.models.clip import ClipEncoder, load_clip
from pixel_detective_dagster.models.image_tower import (
    CALL_IMAGES,
    ImageTower,
    image_tower_dir,
    load_image_encoder,
    open_image_tower,
    torch_free,
)
from pixel_detective_dagster.models.tiny import make_tiny_clip
from pixel_detective_dagster.samples.images import generate_folder
from pixel_detective_dagster.storage.cores import usable_cores

# a fresh process embeds the files named in argv with the recorded tower and reports what it imported
EMBED = """
import json, sys
from pathlib import Path
from pixel_detective_dagster.models.image_tower import load_image_encoder
import numpy as np
encoder, _, _ = load_image_encoder(sys.argv[1], None, device="cpu")
pixels = np.stack([encoder.prepare(Path(p).read_bytes()) for p in sys.argv[2:]])
vectors = encoder.encode_batch(pixels)
print(json.dumps({"kind": type(encoder).__name__, "identity": encoder.identity,
                  "vectors": [v.tolist() for v in vectors], "pixels": pixels.tolist(),
                  "heavy": sorted({"torch", "open_clip", "torchvision"} & set(sys.modules))}))
"""


def _images(folder: Path) -> list[Path]:
    """JPEG and PNG photos of several shapes and modes (landscape, portrait, tiny, greyscale, palette, RGBA)."""
    folder.mkdir(parents=True)
    base = Image.open(generate_folder(folder / "src", 1, "small")[0]).convert("RGB")
    shapes = {"wide.jpg": (640, 360), "tall.jpg": (300, 700), "tiny.png": (40, 23), "square.jpg": (224, 224)}
    paths = []
    for name, size in shapes.items():
        base.resize(size).save(folder / name)
        paths.append(folder / name)
    base.convert("L").save(folder / "grey.jpg")
    base.convert("P").save(folder / "palette.png")
    base.convert("RGBA").save(folder / "alpha.png")
    return [*paths, folder / "grey.jpg", folder / "palette.png", folder / "alpha.png"]


def test_recorded_tower_gives_open_clips_inputs_and_vectors_without_torch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIXEL_DETECTIVE_HOME", str(tmp_path / "home"))
    source = str(make_tiny_clip(tmp_path / "clip"))
    first, _, _ = load_image_encoder(source, None, device="cpu")
    assert isinstance(first, ClipEncoder)  # nothing recorded yet: the full model, which records its tower
    record = json.loads((image_tower_dir(source, None, "cpu", "auto") / "tower.json").read_text())
    assert record["usable"] and record["identity"] == first.identity and record["image_size"] == first.image_size

    files = _images(tmp_path / "images")
    done = subprocess.run([sys.executable, "-c", EMBED, source, *map(str, files)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    fresh = json.loads(done.stdout)
    assert fresh["kind"] == "ImageTower" and fresh["heavy"] == [] and fresh["identity"] == first.identity

    reference = load_clip(source, device="cpu", engine="torch")[0]  # open_clip's preprocessing and torch
    expected = np.stack([reference.prepare(f.read_bytes()).numpy() for f in files])
    assert np.array_equal(np.asarray(fresh["pixels"], np.uint8), expected)  # the very same input pixels
    vectors = np.asarray(fresh["vectors"], np.float32)
    cosines = (vectors * np.stack(reference.encode_batch(torch.from_numpy(expected)))).sum(1)
    assert cosines.min() >= 0.9999


def test_a_model_without_a_torch_free_form_keeps_loading_in_torch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIXEL_DETECTIVE_HOME", str(tmp_path / "home"))
    source = str(make_tiny_clip(tmp_path / "clip"))
    real = open_clip.get_model_preprocess_cfg
    monkeypatch.setattr(open_clip, "get_model_preprocess_cfg", lambda m: {**real(m), "resize_mode": "longest"})
    load_image_encoder(source, None, device="cpu")
    directory = image_tower_dir(source, None, "cpu", "auto")
    record = json.loads((directory / "tower.json").read_text())
    assert not record["usable"] and "no torch-free form" in record["reason"]

    # the marker holds in later processes: they load the full model and do not try again
    stamp = (directory / "tower.json").stat().st_mtime_ns
    script = "import sys; from pixel_detective_dagster.models.image_tower import load_image_encoder as l; "
    script += "print(type(l(sys.argv[1], None, device='cpu')[0]).__name__)"
    done = subprocess.run([sys.executable, "-c", script, source], capture_output=True, text=True)
    assert done.stdout.strip() == "ClipEncoder", done.stderr[-3000:]
    assert (directory / "tower.json").stat().st_mtime_ns == stamp


def test_only_fp32_cpu_onnx_settings_use_the_tower() -> None:
    assert torch_free("cpu", "auto", False, "auto") and torch_free("cpu", "fp32", False, "onnx")
    assert not torch_free("cpu", "auto", False, "torch")  # asked for torch
    assert not torch_free("cpu", "int8", False, "auto")  # a quantized model is another model
    assert not torch_free("cpu", "auto", True, "auto")  # compiled: torch by definition
    assert not torch_free("cuda", "auto", False, "auto")  # a GPU runs the torch model
    assert not torch_free("cpu", "fp16", False, "auto")  # invalid on the CPU: left to the full load's error


def test_a_fresh_ingest_with_captions_off_runs_without_torch(
    env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = tmp_path / "first"
    generate_folder(first, 3, "small")
    assert ingest(first, "one", captions="off").success  # loads the full model once, which records its tower
    second = tmp_path / "second"
    generate_folder(second, 4, "small", start=10)
    script = (
        "import sys; from pixel_detective_dagster.app.cli import main; "
        "code = main(['ingest', sys.argv[1], '--collection', 'two', '--captions', 'off']); "
        "print('HEAVY', sorted({'torch', 'open_clip', 'torchvision', 'transformers'} & set(sys.modules))); "
        "sys.exit(code)"
    )
    done = subprocess.run([sys.executable, "-c", script, str(second)], capture_output=True, text=True)
    assert done.returncode == 0 and "HEAVY []" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]

    with build_resources(resources_from_env()) as r:
        points = r.vector_index.for_collection(r.storage.layout, "two").all_points(with_vectors=True)
        reference = load_clip(r.clip_model.model, device="cpu", engine="torch")[0]
        previews = list((r.storage.layout.home / "previews").rglob("*.jpg"))
    assert len(points) == 4
    for point in points:  # each embedded from its preview (decode once), as the torch model embeds it
        (preview,) = [p for p in previews if p.stem == point.payload["hash"]]
        (expected,) = reference.encode_batch(reference.prepare(preview.read_bytes())[None])
        assert float(np.dot(expected, point.vector)) >= 0.9999

    def no_session(*args: object, **kwargs: object) -> None:
        raise AssertionError("an ONNX session was opened with nothing to embed")

    monkeypatch.setattr(image_tower, "cpu_session", no_session)  # every content below is cached
    again = ingest(second, "three", captions="off")
    assert again.success and {s.stage: s.items for s in again.stages}["clip_embeddings"] == 0


def test_the_tower_batches_like_the_torch_encoder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIXEL_DETECTIVE_HOME", str(tmp_path / "home"))
    source = str(make_tiny_clip(tmp_path / "clip"))
    load_image_encoder(source, None, device="cpu", batch_size=3)
    tower = open_image_tower(image_tower_dir(source, None, "cpu", "auto"), batch_size=3)
    assert isinstance(tower, ImageTower) and tower.batcher.limit == 3 and tower.gpu_decoder() is None
    pixels = np.random.default_rng(0).integers(0, 256, (7, 3, tower.image_size, tower.image_size), dtype=np.uint8)
    vectors = tower.encode_batch(pixels)
    assert len(vectors) == 7 and np.allclose([np.linalg.norm(v) for v in vectors], 1, atol=1e-5)
    np.testing.assert_allclose(np.stack(vectors), tower.encode_images(pixels), atol=1e-6)  # chunks change nothing


def test_a_batch_runs_as_calls_side_by_side_with_the_same_embeddings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIXEL_DETECTIVE_HOME", str(tmp_path / "home"))
    source = str(make_tiny_clip(tmp_path / "clip"))
    load_image_encoder(source, None, device="cpu")
    tower = open_image_tower(image_tower_dir(source, None, "cpu", "auto"))
    assert tower.callers == usable_cores() and tower.batcher.limit == CALL_IMAGES * usable_cores()
    pixels = np.random.default_rng(1).integers(0, 256, (2 * CALL_IMAGES + 3, 3, tower.image_size, tower.image_size))
    tower.callers = 3  # three calls at once, the last one short
    together = tower.encode_images(pixels.astype(np.uint8))
    alone = np.concatenate([tower.encode_images(p[None].astype(np.uint8)) for p in pixels])
    np.testing.assert_allclose(together, alone, atol=1e-5)  # one vector per image, in order


def test_device_and_precision_are_known_without_torch() -> None:
    from pixel_detective_dagster.models.accelerator import cuda_driver_present, device_type, resolve_precision

    assert device_type("cuda:1") == "cuda" and resolve_precision("cuda") == "fp16"
    with pytest.raises(ValueError, match="not supported on the CPU"):
        resolve_precision("cpu", "fp16")
    with pytest.raises(ValueError, match="CPU only"):
        resolve_precision("cuda", "int8")
    if not cuda_driver_present():  # with no CUDA driver, "auto" is answered without importing torch
        script = (
            "import sys; from pixel_detective_dagster.models.accelerator import device_type, resolve_precision; "
            "print(device_type('auto'), resolve_precision(device_type('auto')), 'torch' in sys.modules)"
        )
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
        assert done.stdout.split() == ["cpu", "fp32", "False"]
