"""What a user waits for at the command line: whole fresh ``pixel-detective`` processes, start-up included.

A data directory with the tiny test models (chosen in its settings.toml) and a small indexed
collection is built first. Commands that need no model are timed against ``python -c "import
dagster"`` (what each of them paid before they stopped importing Dagster); a text search through
the cached text tower against the same search loading the full CLIP model (the path before the
cache; the tower is marked unusable for those runs). Medians of fresh processes, run in turn.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import Figure, run_module

PIXEL_DETECTIVE = str(Path(sys.executable).with_name("pixel-detective"))


def _build(home: Path, points: int) -> None:
    """settings.toml -> tiny models; a collection of ``points`` random CLIP vectors in the embedded index."""
    from pixel_detective_dagster.app.model_setup import use_models
    from pixel_detective_dagster.catalog.store import Catalog
    from pixel_detective_dagster.index.connection import IndexConnection
    from pixel_detective_dagster.index.points import IndexPoint, point_id
    from pixel_detective_dagster.models.clip import load_clip
    from pixel_detective_dagster.storage.layout import DataLayout
    from pixel_detective_dagster.storage.settings import Settings

    settings = Settings(home)
    use_models("tiny", settings)
    encoder, _, _ = load_clip(settings.get("clip.model"), device="cpu")
    layout = DataLayout(home)
    (home / "photos").mkdir(parents=True, exist_ok=True)
    catalog = Catalog(layout.catalog_db)
    catalog.register_collection("bench", home / "photos")
    catalog.close()
    vectors = np.random.default_rng(0).normal(size=(points, encoder.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = IndexConnection().for_collection(layout, "bench", encoder.dim, encoder.identity, points)
    hashes = [f"{i:064x}" for i in range(points)]
    index.upsert(
        [
            IndexPoint(point_id("bench", h), v, {"hash": h, "path": f"{i}.jpg", "caption": f"photo {i}"})
            for i, (h, v) in enumerate(zip(hashes, vectors))
        ]
    )


def _time(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, check=False, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{argv} failed: {done.stderr[-2000:]}")
    return time.perf_counter() - start


def _medians(commands: dict[str, list[str]], env: dict[str, str], repeat: int) -> dict[str, float]:
    """Each command ``repeat`` times, interleaved (A B C A B C ...), after one unmeasured warm-up each."""
    for argv in commands.values():
        _time(argv, env)
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeat):
        for name, argv in commands.items():
            samples[name].append(_time(argv, env))
    return {name: statistics.median(values) for name, values in samples.items()}


def cases(quick: bool) -> list[Figure]:
    repeat = 3 if quick else 7
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        _build(home, 200 if quick else 2_000)
        env = {**os.environ, "PIXEL_DETECTIVE_HOME": str(home), "PYTHONPATH": os.pathsep.join(sys.path)}
        search = [PIXEL_DETECTIVE, "search", "a dog", "--collection", "bench"]
        _time(search, env)  # the first full load writes the text tower
        (tower,) = (home / "models" / "text_towers").iterdir()
        light = {
            "--help": [PIXEL_DETECTIVE, "--help"],
            "config": [PIXEL_DETECTIVE, "config"],
            "status": [PIXEL_DETECTIVE, "status", "--collection", "bench"],
            "collections": [PIXEL_DETECTIVE, "collections"],
            "search (text tower)": search,
            "import dagster": [sys.executable, "-c", "import dagster"],
        }
        timed = _medians(light, env, repeat)
        meta = tower / "tower.json"
        kept = meta.read_text()
        meta.write_text(json.dumps({**json.loads(kept), "usable": False}))
        try:
            timed["search (full CLIP load)"] = _medians({"full": search}, env, repeat)["full"]
        finally:
            meta.write_text(kept)
    figures = [
        Figure(f"fresh `pixel-detective {name}`", "wall", timed[name], timed["import dagster"], "s", "import dagster")
        for name in ("--help", "config", "status", "collections")
    ]
    figures.append(
        Figure(
            'fresh `pixel-detective search "a dog"`',
            "wall",
            timed["search (text tower)"],
            timed["search (full CLIP load)"],
            "s",
            "the same search loading the full CLIP model",
            "tiny CLIP; ViT-B-32's full load adds seconds more",
        )
    )
    return figures


def main() -> None:
    run_module(cases, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
