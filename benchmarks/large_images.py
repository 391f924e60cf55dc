"""Peak memory of thumbnailing one huge image (a 20000x10000 panorama), per format, per worker.

    python -m benchmarks.large_images [--quick] [--json FILE]

Each file is probed and thumbnailed (256 px) in a fresh subprocess; the figure is how far its peak
RSS (Linux VmHWM, reset after reading the file) rose above what it held then, against the baseline
of the full-size RGB frame Pillow would hold (4 bytes a pixel). ``--quick``: 10000x5000.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.harness import Figure, run_module
from pixel_detective_dagster.samples.images import photo, variant
from pixel_detective_dagster.samples.raw import write_dng

PEAK_RSS_SCRIPT = """
import json, sys
from pathlib import Path
from pixel_detective_dagster.media.imaging import make_thumbnail, probe, read_bytes

def status_mib(field):
    line = next(l for l in open("/proc/self/status") if l.startswith(field + ":"))
    return int(line.split()[1]) / 1024

data = read_bytes(Path(sys.argv[1]))
before = status_mib("VmRSS")
with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")  # restart the peak (VmHWM) from here
info = probe(data)
thumb = make_thumbnail(data, 256)
added = status_mib("VmHWM") - before
print(json.dumps({"size": [info.width, info.height], "thumb": list(thumb.size), "added_mb": added}))
"""


def peak_rss(path: Path) -> dict[str, object]:
    """Probe + thumbnail ``path`` in a fresh interpreter: dimensions, thumbnail size, peak RSS added (MiB)."""
    command = [sys.executable, "-c", PEAK_RSS_SCRIPT, str(path)]
    return json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


def panorama(size: tuple[int, int]) -> Image.Image:
    return variant(photo("coffee.png"), 0, (size[0] // 10, size[1] // 10)).resize(size, Image.Resampling.NEAREST)


def write_all(folder: Path, size: tuple[int, int]) -> dict[str, Path]:
    import tifffile

    img = panorama(size)
    files = {
        "JPEG": folder / "pano.jpg",
        "PNG": folder / "pano.png",
        "16-bit TIFF": folder / "pano16.tif",
        "DNG (no preview)": folder / "pano.dng",
    }
    img.save(files["JPEG"], quality=85)
    img.save(files["PNG"], compress_level=1)
    tifffile.imwrite(files["16-bit TIFF"], np.asarray(img, dtype=np.uint16) * 257, photometric="rgb")
    write_dng(img, files["DNG (no preview)"], preview_side=None)
    return files


def cases(quick: bool) -> list[Figure]:
    size = (10000, 5000) if quick else (20000, 10000)
    frame_mb = size[0] * size[1] * 4 / 1024**2
    figures = []
    with tempfile.TemporaryDirectory(prefix="pd-large-") as folder:
        for label, path in write_all(Path(folder), size).items():
            added = float(peak_rss(path)["added_mb"])  # type: ignore[arg-type]
            note = f"file {path.stat().st_size / 1024**2:.0f} MiB"
            case = f"thumbnail {size[0]}x{size[1]} {label}"
            figures.append(Figure(case, "peak RSS added", added, frame_mb, "MiB", "full-size RGB frame", note))
    return figures


def main() -> None:
    run_module(cases, __doc__)


if __name__ == "__main__":
    main()
