"""Camera RAW decoding for CLIP (shorter side 224): embedded-preview fast path vs LibRaw demosaic.

    python -m benchmarks.raw [--quick] [--json FILE]

The same generated DNG files (24 MP RGGB Bayer, 12-bit, with a 1616x1080 embedded JPEG preview as a
Sony body writes; ``--quick``: 6 MP) are decoded three ways in one process: the preview fast path the
pipeline takes, a half-size demosaic (what it does when the preview is too small) and a full
demosaic. Figures are images/s, the demosaic runs being the baselines.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks.harness import Figure, run_module, seconds
from pixel_detective_dagster.media.formats.raw import decode_raw
from pixel_detective_dagster.samples.images import PHOTOS, photo, variant
from pixel_detective_dagster.samples.raw import write_dng

CLIP_SIDE = 224


def generate(folder: Path, count: int, size: tuple[int, int]) -> list[bytes]:
    paths = [
        write_dng(variant(photo(PHOTOS[i % len(PHOTOS)]), i, size), folder / f"DSC{i:05d}.dng", preview_side=1616)
        for i in range(count)
    ]
    return [p.read_bytes() for p in paths]


def images_per_second(files: list[bytes], min_side: int, use_preview: bool, expected: str, repeat: int) -> float:
    def run() -> None:
        for data in files:
            _, route = decode_raw(data, min_side, use_preview=use_preview)
            assert route == expected, route

    return len(files) / seconds(run, repeat)


def cases(quick: bool) -> list[Figure]:
    count, size, label = (3, (3000, 2000), "6 MP") if quick else (6, (6000, 4000), "24 MP")
    with tempfile.TemporaryDirectory(prefix="pd-raw-") as folder:
        files = generate(Path(folder), count, size)
        preview = images_per_second(files, CLIP_SIDE, True, "preview", 3)
        half = images_per_second(files, CLIP_SIDE, False, "half-size demosaic", 1)
        full = images_per_second(files, min(size), False, "demosaic", 1)
    note = f"{count} DNG files, {label}, decoded to shorter side >= {CLIP_SIDE}"
    return [
        Figure("raw preview vs half-size demosaic", "decode rate", preview, half, "img/s", "half-size demosaic", note),
        Figure("raw preview vs full demosaic", "decode rate", preview, full, "img/s", "full demosaic (AHD)", note),
    ]


def main() -> None:
    run_module(cases, __doc__)


if __name__ == "__main__":
    main()
