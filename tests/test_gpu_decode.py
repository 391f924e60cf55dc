"""The CUDA JPEG decode path: which device decodes, which files qualify, and the fallback to the CPU path.

No GPU here: ``GpuDecoder`` runs torchvision's own ``decode_jpeg`` on ``cpu`` (the same batched call the CUDA
path makes), and the selection logic is a plain function of the model device and the setting.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pixel_detective_dagster.media.imaging import ImageError
from pixel_detective_dagster.models.gpu_decode import Geometry, GpuDecoder, decode_device, gpu_decodable, resize
from pixel_detective_dagster.models.inference import run_over_contents
from pixel_detective_dagster.samples.images import generate_folder


def jpeg(size: tuple[int, int] = (120, 90), **save: object) -> bytes:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    out = io.BytesIO()
    image.save(out, "JPEG", **save)
    return out.getvalue()


def test_decode_device_is_a_plain_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    monkeypatch.delenv("PIXEL_DETECTIVE_GPU_DECODE", raising=False)
    assert decode_device(cuda, nvjpeg=True) == "cuda"
    assert decode_device(cuda, nvjpeg=False) == "cpu"  # no nvJPEG in this torchvision / no CUDA
    assert decode_device(cpu, nvjpeg=True) == "cpu"  # the model is on the CPU: decode there
    assert decode_device(torch.device("mps"), nvjpeg=True) == "cpu"
    assert decode_device(cuda, "off", nvjpeg=True) == "cpu"
    monkeypatch.setenv("PIXEL_DETECTIVE_GPU_DECODE", "off")
    assert decode_device(cuda, nvjpeg=True) == "cpu"
    assert decode_device(cpu) == "cpu" and (decode_device(cuda) == "cpu" or torch.cuda.is_available())


def test_only_plain_upright_jpegs_go_to_the_gpu() -> None:
    assert gpu_decodable(jpeg())
    assert gpu_decodable(jpeg(quality=50))
    assert not gpu_decodable(jpeg(progressive=True))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: the CPU path applies the EXIF orientation
    assert not gpu_decodable(jpeg(exif=exif.tobytes()))
    cmyk = io.BytesIO()
    Image.new("CMYK", (40, 30)).save(cmyk, "JPEG")
    assert not gpu_decodable(cmyk.getvalue())
    png = io.BytesIO()
    Image.new("RGB", (40, 30)).save(png, "PNG")
    assert not gpu_decodable(png.getvalue())
    assert not gpu_decodable(b"\xff\xd8 not really a jpeg")


@pytest.mark.parametrize("crop", [True, False])
def test_device_resize_matches_pillow(crop: bool) -> None:
    data = jpeg((300, 200))
    image = Image.open(io.BytesIO(data)).convert("RGB")
    if crop:  # open_clip: shorter side to 64, centre crop
        image = image.resize((96, 64), Image.Resampling.BICUBIC).crop((16, 0, 80, 64))
    else:  # BLIP: straight to (h, w)
        image = image.resize((48, 64), Image.Resampling.BICUBIC)
    expected = torch.from_numpy(np.array(image)).permute(2, 0, 1)
    tensor = torch.from_numpy(np.array(Image.open(io.BytesIO(data)).convert("RGB"))).permute(2, 0, 1)
    got = resize(tensor, Geometry((64, 64) if crop else (64, 48), crop))
    assert got.dtype == torch.uint8 and got.shape == expected.shape
    assert (got.int() - expected.int()).abs().float().mean() < 3.0  # same geometry, bicubic either way


def test_batched_decode_falls_back_per_image() -> None:
    decoder = GpuDecoder(Geometry((32, 32), crop=True), device="cpu")
    good = jpeg()
    broken = good[: len(good) // 2]  # a truncated JPEG: its header passes, the decode fails
    assert gpu_decodable(broken)
    first, second, third = decoder([good, broken, good])
    assert second is None  # the caller decodes it on the CPU, which reports why
    assert first is not None and first.shape == (3, 32, 32) and torch.equal(first, third)


def test_run_over_contents_with_device_decode_gives_the_cpu_results_and_reasons(
    tmp_path: Path, tiny_models: dict[str, Path]
) -> None:
    from pixel_detective_dagster.media.imaging import content_hash
    from pixel_detective_dagster.models.clip import load_clip
    from pixel_detective_dagster.models.gpu_decode import clip_geometry

    encoder = load_clip(str(tiny_models["clip"]), device="cpu", engine="torch")[0]
    paths = generate_folder(tmp_path, 4, "small")
    paths.append(tmp_path / "broken.jpg")
    whole = paths[0].read_bytes()
    paths[-1].write_bytes(whole[: len(whole) // 2])
    png = tmp_path / "flat.png"
    Image.new("RGB", (80, 60), (200, 10, 10)).save(png)
    paths.append(png)
    items = [(content_hash(p.read_bytes()), p.name) for p in paths]
    geometry = clip_geometry(encoder.split.geometry, encoder.image_size)
    assert geometry == Geometry((encoder.image_size, encoder.image_size), crop=True)
    calls: list[int] = []

    def on_device(blobs: list[bytes]) -> list[torch.Tensor | None]:
        calls.append(len(blobs))
        return GpuDecoder(geometry, device="cpu")(blobs)

    run = lambda gpu: run_over_contents(tmp_path, items, {}, encoder.prepare, encoder.encode_batch, 8, 2, None, gpu)
    cpu, device = run(None), run(on_device)
    assert calls == [5]  # one batched call for the four JPEGs and the broken one; the PNG stayed on the CPU
    assert device.failures == cpu.failures and len(cpu.failures) == 1  # same reason, from the CPU decoder
    assert device.results.keys() == cpu.results.keys() and len(cpu.results) == 5
    for content, vector in cpu.results.items():  # the same embeddings, up to resampling differences
        assert float(np.dot(vector, device.results[content])) > 0.98
    with pytest.raises(ImageError):
        encoder.prepare(paths[-2].read_bytes())
