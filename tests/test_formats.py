"""Every kind of photo people have: camera RAW, HEIC/AVIF/JPEG XL, animated, 16-bit and huge images.

Each file is generated here in its real format (DNG from a Bayer mosaic, HEIC through libheif, ...)
and read back through the same functions the assets call.
"""

from __future__ import annotations

import dataclasses
import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from benchmarks.large_images import panorama, peak_rss
from pixel_detective_dagster.media.formats import plugins
from pixel_detective_dagster.media.formats.budget import DecodeBudget
from pixel_detective_dagster.media.formats.raw import decode_raw
from pixel_detective_dagster.media.formats.sniff import sniff
from pixel_detective_dagster.media.imaging import ImageError, _to_rgb, decode_rgb, make_thumbnail, probe
from pixel_detective_dagster.media.manifests import inspect_file
from pixel_detective_dagster.samples.images import photo, variant
from pixel_detective_dagster.samples.raw import write_dng

RED, GREEN, BLUE = (220, 30, 30), (30, 200, 40), (30, 40, 220)


def stripes(size: tuple[int, int] = (600, 400)) -> Image.Image:
    """Red, green and blue vertical thirds: orientation and colour show at a glance."""
    img = Image.new("RGB", size, RED)
    w, h = size
    img.paste(GREEN, (w // 3, 0, 2 * w // 3, h))
    img.paste(BLUE, (2 * w // 3, 0, w, h))
    return img


def dominant(img: Image.Image, fx: float, fy: float) -> str:
    """Which channel dominates at a fractional position of ``img``."""
    pixel = img.convert("RGB").getpixel((int(fx * (img.width - 1)), int(fy * (img.height - 1))))
    return "RGB"[int(np.argmax(pixel))]


def assert_upright_after_orientation_6(img: Image.Image) -> None:
    """``stripes`` stored sideways (EXIF 6) viewed upright: portrait, red on top, blue at the bottom."""
    assert img.height > img.width
    assert [dominant(img, 0.5, f) for f in (0.1, 0.5, 0.9)] == ["R", "G", "B"]


def camera_exif(orientation: int = 6) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "Apple"
    exif[0x0110] = "iPhone 15 Pro"
    return exif.tobytes()


def encoded(img: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    return buffer.getvalue()


# --- camera RAW ---------------------------------------------------------------------------------


def test_dng_uses_embedded_preview_upright_with_exif(tmp_path: Path) -> None:
    import rawpy

    path = write_dng(
        stripes((1200, 800)),
        tmp_path / "IMG_0001.dng",
        preview_side=1024,
        orientation=6,
        make="Sony",
        model="ILCE-7M4",
        taken="2024:05:17 09:30:00",
    )
    data = path.read_bytes()
    with rawpy.imread(str(path)) as raw:  # LibRaw reads it as a Bayer sensor file
        assert raw.color_desc == b"RGBG" and raw.raw_image.shape == (800, 1200)
    info = probe(data)
    assert (info.format, info.width, info.height) == ("dng", 1200, 800)
    assert info.exif == {
        "taken_at": "2024-05-17T09:30:00",
        "camera_make": "Sony",
        "camera_model": "ILCE-7M4",
        "orientation": 6,
    }
    img, route = decode_raw(data, 384)
    assert route == "preview" and min(img.size) >= 384
    assert_upright_after_orientation_6(img)
    thumb = make_thumbnail(data, 256)
    assert thumb.size == (171, 256)
    assert_upright_after_orientation_6(thumb)


@pytest.mark.parametrize(
    ("preview_side", "min_side", "route"),
    [(None, 224, "half-size demosaic"), (None, 500, "demosaic"), (256, 224, "half-size demosaic")],
)
def test_dng_without_a_big_enough_preview_is_demosaiced(
    tmp_path: Path, preview_side: int | None, min_side: int, route: str
) -> None:
    data = write_dng(stripes((1200, 800)), tmp_path / "x.dng", preview_side=preview_side, orientation=6).read_bytes()
    img, taken = decode_raw(data, min_side)
    assert taken == route and min(img.size) >= min_side
    assert_upright_after_orientation_6(img)
    upright = decode_rgb(data, min_side)
    assert min(upright.size) >= min_side and upright.height > upright.width


def test_demosaic_and_preview_give_the_same_colours(tmp_path: Path) -> None:
    data = write_dng(variant(photo("coffee.png"), 0, (1200, 800)), tmp_path / "c.dng").read_bytes()
    fast, _ = decode_raw(data, 300)
    full, route = decode_raw(data, 300, use_preview=False)
    assert route == "half-size demosaic"
    a = np.asarray(fast.resize((60, 40)), dtype=np.float32)
    b = np.asarray(full.resize((60, 40)), dtype=np.float32)
    assert np.abs(a - b).mean() < 12  # same photo, same colours (JPEG preview vs LibRaw's rendering)


def test_raw_containers_are_recognised_by_content() -> None:
    headers = {
        b"FUJIFILMCCD-RAW 0201FF383501": "raf",
        b"IIRO\x08\x00\x00\x00": "orf",
        b"IIU\x00\x08\x00\x00\x00": "rw2",
        b"\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01crx isom": "cr3",
        b"II*\x00\x10\x00\x00\x00CR\x02\x00": "cr2",
    }
    for header, fmt in headers.items():
        container = sniff(header)
        assert container is not None and (container.format, container.plugin) == (fmt, "raw")
    assert sniff(encoded(stripes(), "TIFF")) is None  # an ordinary TIFF stays with Pillow
    assert sniff(encoded(stripes(), "JPEG")) is None


# --- optional extras missing ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plugin", "name", "make"),
    [
        ("raw", "IMG_0002.dng", lambda p: write_dng(stripes(), p)),
        ("heif", "IMG_0003.heic", lambda p: p.write_bytes(encoded(stripes(), "HEIF"))),
    ],
)
def test_missing_extra_is_recorded_with_the_extra_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plugin: str, name: str, make: object
) -> None:
    plugins.load("heif")  # to write the HEIC below
    make(tmp_path / name)  # type: ignore[operator]
    absent = dataclasses.replace(plugins.PLUGINS[plugin], module=f"{plugin}_plugin_not_installed")
    monkeypatch.setitem(plugins.PLUGINS, plugin, absent)
    row = inspect_file(tmp_path, name, 10**9)
    assert row["status"] == "failed"
    assert f'pip install "pixel-detective-dagster[{plugin}]"' in str(row["reason"])
    assert not plugins.available(plugin)
    with pytest.raises(ImageError, match=rf"\[{plugin}\]"):
        decode_rgb((tmp_path / name).read_bytes(), 224)


# --- HEIC, AVIF, JPEG XL ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "plugin", "recorded"), [("HEIF", "heif", "heif"), ("AVIF", "avif", "avif"), ("JXL", "jxl", "jxl")]
)
def test_modern_formats_upright_with_exif(fmt: str, plugin: str, recorded: str) -> None:
    plugins.load(plugin)
    data = encoded(stripes(), fmt, exif=camera_exif(6), quality=90)
    info = probe(data)
    assert info.format == recorded and info.exif["camera_make"] == "Apple"
    assert info.exif["camera_model"] == "iPhone 15 Pro"
    assert_upright_after_orientation_6(decode_rgb(data, 224))
    assert_upright_after_orientation_6(make_thumbnail(data, 256))


# --- animated, 16-bit, huge ------------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "recorded"), [("GIF", "gif"), ("WEBP", "webp"), ("PNG", "png")])
def test_animated_images_use_the_first_frame_and_count_frames(fmt: str, recorded: str) -> None:
    frames = [Image.new("RGB", (320, 240), colour) for colour in (GREEN, RED, BLUE, RED)]
    data = encoded(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    info = probe(data)
    assert (info.format, info.frames) == (recorded, 4)
    img = decode_rgb(data, 224)
    assert img.mode == "RGB" and dominant(img, 0.5, 0.5) == "G"


def test_16_bit_tiff_and_png_keep_colour_and_brightness() -> None:
    rgb16 = (np.asarray(stripes(), dtype=np.uint16) * 257).astype(np.uint16)
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, rgb16, photometric="rgb")
    img = decode_rgb(buffer.getvalue(), 224)
    assert [dominant(img, f, 0.5) for f in (0.1, 0.5, 0.9)] == ["R", "G", "B"]
    assert abs(img.getpixel((10, 10))[0] - RED[0]) <= 1
    grey = Image.fromarray(np.full((300, 400), 32768, dtype=np.uint16))  # mid grey in 16 bits
    img = decode_rgb(encoded(grey, "PNG"), 224)
    assert img.getpixel((5, 5)) == (127, 127, 127)


def test_panorama_is_not_a_bomb_and_decodes_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "pano.jpg"
    panorama((20000, 10000)).save(path, quality=80)
    result = peak_rss(path)
    assert result["size"] == [20000, 10000] and result["thumb"] == [256, 128]
    # a 1/8-scale decode (2500x1250 RGB = 12 MiB), never the 763 MiB full frame
    assert result["added_mb"] < 60, result


@pytest.mark.parametrize("mode", ["RGB16", "GREY16", "RGB8"])
def test_uncompressed_tiff_reduced_in_bands_equals_whole_frame(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    from pixel_detective_dagster.media.formats import banded

    rgb = np.asarray(variant(photo("coffee.png"), 0, (1501, 997)), dtype=np.uint16)
    pixels = {"RGB16": rgb * 257, "GREY16": rgb[..., 1] * 257, "RGB8": rgb.astype(np.uint8)}[mode]
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, pixels, photometric="rgb" if pixels.ndim == 3 else "minisblack")
    data = buffer.getvalue()
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        whole = _to_rgb(img).reduce(9)  # Pillow's whole-frame decode, then reduce
    monkeypatch.setattr(banded, "BAND_BYTES", 200_000)  # many bands, the last one short
    with Image.open(io.BytesIO(data)) as img:
        in_bands = banded.banded_reduce(data, img, 9, _to_rgb)
    assert in_bands is not None and in_bands.size == whole.size == (167, 111)
    assert decode_rgb(data, 100).size == whole.size
    assert np.array_equal(np.asarray(in_bands), np.asarray(whole))


def test_decode_budget_serialises_big_frames_but_never_blocks_a_lone_one() -> None:
    budget = DecodeBudget(limit_bytes=100)
    with budget.reserve(500):  # larger than the whole budget: runs, alone
        assert budget.held == 500
    events: list[str] = []

    def decode(name: str) -> None:
        with budget.reserve(60):
            events.append(f"{name} start")
            time.sleep(0.05)
            events.append(f"{name} end")

    workers = [threading.Thread(target=decode, args=(name,)) for name in "ab"]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert [e.split()[1] for e in events] == ["start", "end", "start", "end"]  # never both frames at once
    assert budget.held == 0


# --- through the whole graph -----------------------------------------------------------------------


def test_library_of_every_format_ingests_upright(env: Path, tmp_path: Path) -> None:
    from pixel_detective_dagster.app.ingest import ingest
    from tests.test_pipeline import index_points

    plugins.load("heif")
    cat = variant(photo("chelsea.png"), 0, (900, 600))  # the upright photo
    sideways = cat.transpose(Image.Transpose.ROTATE_90)  # as a camera held in portrait stores it: EXIF 6
    folder = tmp_path / "library"
    folder.mkdir()
    cat.save(folder / "cat.jpg", quality=92)
    sideways.save(folder / "sideways.jpg", quality=92)  # what a decoder ignoring orientation would see
    write_dng(sideways, folder / "raw/cat_preview.dng", preview_side=1024, orientation=6, make="Nikon", model="Z 8")
    write_dng(sideways, folder / "raw/cat_sensor.dng", preview_side=None, orientation=6)
    (folder / "phone").mkdir()
    sideways.save(folder / "phone/cat.heic", exif=camera_exif(6), quality=92)
    sideways.save(folder / "phone/cat.avif", exif=camera_exif(6), quality=92)
    plugins.load("jxl")
    sideways.save(folder / "phone/cat.jxl", exif=camera_exif(6), quality=92)
    tifffile.imwrite(folder / "scan16.tif", np.asarray(cat, dtype=np.uint16) * 257, photometric="rgb")
    frames = [cat, stripes(cat.size)]
    for name in ("anim.gif", "anim.webp", "anim.png"):
        frames[0].save(folder / name, save_all=True, append_images=frames[1:], duration=100, loop=0)

    report = ingest(folder, "every")
    assert report.success and report.failures == []
    points = {p["path"]: p for p in index_points("every").values()}
    assert set(points) == {
        "cat.jpg",
        "sideways.jpg",
        "raw/cat_preview.dng",
        "raw/cat_sensor.dng",
        "scan16.tif",
        "phone/cat.heic",
        "phone/cat.avif",
        "phone/cat.jxl",
        "anim.gif",
        "anim.webp",
        "anim.png",
    }
    raw = points["raw/cat_preview.dng"]
    assert (raw["format"], raw["camera_make"], raw["camera_model"], raw["orientation"]) == ("dng", "Nikon", "Z 8", 6)
    assert raw["taken_at"] == "2024-05-17T09:30:00"
    assert {points[f"anim.{ext}"]["frames"] for ext in ("gif", "webp", "png")} == {2}
    reference = points.pop("cat.jpg")["vector"]
    sideways_distance = 1 - float(np.dot(points.pop("sideways.jpg")["vector"], reference))
    distances = {path: 1 - float(np.dot(point["vector"], reference)) for path, point in points.items()}
    for path, point in points.items():
        with Image.open(point["thumbnail"]) as thumb:
            assert thumb.size == (256, 171), path  # every one upright (landscape) like the photo
    # the same picture in any container embeds like the upright JPEG, far closer than the sideways one
    assert max(distances.values()) < sideways_distance / 4, (distances, sideways_distance)
