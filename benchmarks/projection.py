"""Maps in a fresh process: the default engine (``TorchUMAP``) against umap-learn, each in its own process.

    python -m benchmarks.projection [--quick] [--json FILE]

For 1k, 10k and 100k clustered 512-d CLIP-like vectors (``--quick``: 1k and 10k) a new Python process
imports the project and fits the collection's map with ``update_map`` (unit vectors, PCA to 50
dimensions, UMAP; sample-fit + transform above 20k points), as every ``pixel-detective ingest`` and
sensor-triggered run does. Its wall time from the start of its code to the fitted map (reading the
vectors excepted) counts the imports, the engine's choice and any JIT compilation. The baseline is the
same in a fresh process with the ``umap-learn`` engine, whose numba cache persists between runs as the data directory's does (at 100k it gets ``UMAP_LEARN_LIMIT`` seconds).
Both maps are scored by trustworthiness (k=10) on the same 2,000 points. At 10k a +5 % batch is placed
on the saved map by another fresh process (load the model, transform) and the old points are checked
to be unmoved. Child CPU seconds (user + system) are noted beside each wall figure: on a shared machine
they are the steadier measure. With a CUDA device the torch engine maps 1M points, and cuML where it imports.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import Figure, run_module

NUMBA_CACHE = Path(tempfile.gettempdir()) / "pixel_detective_numba"
UMAP_LEARN_LIMIT = 1_800  # seconds a fresh umap-learn process gets at 100k before it counts as unfinished
CHILD = "from benchmarks.projection import child; child({!r})"


def child(job: str) -> None:
    """In the fresh process: one map (or one batch on a saved map) of the job's vectors; prints a JSON line."""
    start = time.perf_counter()
    import pandas as pd

    from pixel_detective_dagster.projection import (
        ModelStore,
        ProjectionSettings,
        choose_engine,
        make_engine,
        update_map,
    )

    spec = json.loads(job)
    engine, settings = make_engine(choose_engine(spec["engine"]).name, NUMBA_CACHE), ProjectionSettings()
    imported = time.perf_counter()  # the engine's choice counts (it may import torch to look for a GPU)
    vectors = np.load(spec["vectors"])
    previous = pd.read_parquet(spec["previous"]) if spec.get("previous") else None
    loaded = time.perf_counter()
    ids = [str(i) for i in range(len(vectors))]
    update = update_map(ids, vectors, previous, ModelStore(Path(spec["model"])), engine, settings)
    mapped = time.perf_counter()
    update.frame().to_parquet(spec["frame"])
    cluster_seconds = None
    if previous is None:
        engine.cluster(update.coords, vectors, settings)
        cluster_seconds = time.perf_counter() - mapped
    result = {
        "imports": imported - start,
        "map": update.seconds,
        "to_map": mapped - start - (loaded - imported),  # start to fitted map, less reading the vectors
        "cluster": cluster_seconds,
        "trust": update.trustworthiness,
        "mode": update.mode,
        "counts": update.counts(),
        "method": update.reducer.method if update.reducer else "",
    }
    print(json.dumps(result))


def fresh(job: dict[str, Any], timeout: float | None = None) -> dict[str, Any] | None:
    """Run ``child`` in a new interpreter: its result plus ``wall`` and ``cpu`` seconds; None past ``timeout``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, "-c", CHILD.format(json.dumps(job))],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None
    if done.returncode:
        raise RuntimeError(f"the fresh {job['engine']} process failed:\n{done.stderr[-3000:]}")
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return json.loads(done.stdout.strip().splitlines()[-1]) | {"wall": wall, "cpu": cpu}


def _job(engine: str, vectors: Path, work: Path, tag: str, previous: Path | None = None) -> dict[str, Any]:
    return {
        "engine": engine,
        "vectors": str(vectors),
        "model": str(work / f"{tag}.joblib"),
        "frame": str(work / f"{tag}-{'batch' if previous else 'fit'}.parquet"),
        "previous": str(previous) if previous else None,
    }


def _vectors(n: int, work: Path, clusters: int = 30) -> tuple[Path, Path]:
    """The collection of ``n`` points and the same plus a later 5 % batch, as .npy files."""
    from pixel_detective_dagster.projection.synthetic import clustered_vectors

    vectors = clustered_vectors(n + n // 20, clusters=clusters, seed=n)[0]
    paths = work / f"{n}.npy", work / f"{n}-plus.npy"
    np.save(paths[0], vectors[:n])
    np.save(paths[1], vectors)
    return paths


def _note(run: dict[str, Any]) -> str:
    return (
        f"imports {run['imports']:.1f} s, map {run['map']:.1f} s; whole process {run['wall']:.1f} s "
        f"with clusters and writes, cpu {run['cpu']:.1f} s"
    )


def _size_figures(n: int, work: Path) -> list[Figure]:
    collection, grown = _vectors(n, work)
    ours = fresh(_job("auto", collection, work, f"auto-{n}"))
    assert ours is not None
    theirs = fresh(_job("umap-learn", collection, work, f"umap-learn-{n}"), UMAP_LEARN_LIMIT if n > 10_000 else None)
    case = f"{n:,} points"
    unfinished = f"did not finish in {UMAP_LEARN_LIMIT} s"
    fitted = f"{ours['method']}; {ours['counts']['fit']:,} fitted, {ours['counts']['transform']:,} transformed"
    figures = [
        Figure(
            case,
            "fresh-process map s",
            ours["to_map"],
            theirs["to_map"] if theirs else float("nan"),
            "s",
            "umap-learn engine, fresh process",
            f"{fitted}; ours {_note(ours)}; theirs " + (_note(theirs) if theirs else unfinished),
        ),
        Figure(
            case,
            "trustworthiness",
            ours["trust"],
            theirs["trust"] if theirs else float("nan"),
            "",
            "umap-learn engine",
            "k=10 on the same 2,000 points",
        ),
        Figure(case, "cluster s", ours["cluster"], ours["map"], "s", "the map", "HDBSCAN on the map + K-Means"),
    ]
    if n == 10_000:
        fit_job = _job("auto", collection, work, f"auto-{n}")
        batch = fresh(_job("auto", grown, work, f"auto-{n}", previous=Path(fit_job["frame"])))
        assert batch is not None and batch["mode"] == "transform", batch
        import pandas as pd

        before, after = pd.read_parquet(fit_job["frame"]), pd.read_parquet(work / f"auto-{n}-batch.parquet")
        assert (after[["x", "y"]].iloc[:n].to_numpy() == before[["x", "y"]].to_numpy()).all(), "old points moved"
        figures.append(
            Figure(
                case,
                "+5 % batch, fresh process s",
                batch["to_map"],
                ours["to_map"],
                "s",
                "a fresh-process full fit",
                f"update_map {batch['map']:.2f} s after imports {batch['imports']:.1f} s, cpu {batch['cpu']:.1f} s; "
                f"{batch['counts']['transform']} placed, {batch['counts']['kept']:,} kept unmoved",
            )
        )
    return figures


def _gpu_figures(work: Path) -> list[Figure]:
    from pixel_detective_dagster.projection import cuml_status

    collection, _ = _vectors(1_000_000, work, clusters=100)
    torch_1m = fresh(_job("torch", collection, work, "torch-1m"))
    assert torch_1m is not None
    figures = [
        Figure("1,000,000 points", "fresh-process map s", torch_1m["to_map"], 60.0, "s", "target", _note(torch_1m))
    ]
    if cuml_status()[0]:
        cuml_1m = fresh(_job("cuml", collection, work, "cuml-1m"))
        assert cuml_1m is not None
        figures.append(
            Figure("1,000,000 points", "fresh-process map s", torch_1m["to_map"], cuml_1m["to_map"], "s", "cuML engine")
        )
    return figures


def cases(quick: bool) -> list[Figure]:
    import torch

    work = Path(tempfile.mkdtemp(prefix="pd-bench-projection-"))
    figures = [f for n in ((1_000, 10_000) if quick else (1_000, 10_000, 100_000)) for f in _size_figures(n, work)]
    if torch.cuda.is_available() and not quick:
        figures += _gpu_figures(work)
    return figures


def main() -> None:
    run_module(cases, __doc__)


if __name__ == "__main__":
    main()
