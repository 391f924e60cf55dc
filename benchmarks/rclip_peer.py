"""rclip (the CLI peer) side by side with ``pixel-detective ingest --captions off``, on the same 1 MP JPEGs and
the same random ViT-B-32-256 weights: CPU-seconds of a first index, of a re-index of the unchanged folder,
and peak RSS, each in a fresh process, interleaved.

    python -m benchmarks.rclip_peer [--quick] [--count N] [--repeats N] [--baseline-tree PATH] [--json FILE]

rclip runs offline: its ``RCLIP_DATADIR`` gets ``ViT-B-32-256-datacomp_s34b_b86k/{visual,textual}.onnx``
(the project's own ONNX export of the random weights, input ``input``, one output, as rclip reads them) and
open_clip's BPE vocabulary as ``tokenizer/bpe_simple_vocab_16e6.txt.gz``, so it never downloads. rclip
cannot index without a query: its figures include embedding one text query (``rclip -f -t 1 "a photo"``).
Before each first index the project's data dir ingests a 2-image folder, which makes its once-per-model ONNX
export (not counted: rclip downloads its export ready-made).
``--baseline-tree`` also runs another checkout of the project (first on ``PYTHONPATH``: the commit before a change)
in the same rounds, so a change's effect is read as a paired ratio, free of the drift between runs.
Needs ``pip install --no-deps rclip pi-heif`` (rclip pins older numpy / Pillow; see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import tomllib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness import Figure, run_module

RCLIP_MODEL_SUBDIR = "ViT-B-32-256-datacomp_s34b_b86k"
ARCH = "ViT-B-32-256"


@dataclass(frozen=True)
class Usage:
    cpu_seconds: float
    peak_rss_mb: float
    wall_seconds: float


def run_measured(command: list[str], cwd: Path, env: dict[str, str]) -> Usage:
    """Run ``command`` to completion; its (and its children's) CPU-seconds and peak RSS from ``wait4``."""
    import time

    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise RuntimeError(f"{command[0]} failed ({process.returncode}): {stderr[-2000:]}")
    return Usage(usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, wall)


def rclip_datadir(model_dir: Path, target: Path) -> Path:
    """An ``RCLIP_DATADIR`` holding the ONNX export of ``model_dir``'s towers and the tokenizer vocabulary."""
    import open_clip
    import torch

    from pixel_detective_dagster.models.clip import load_clip
    from pixel_detective_dagster.models.onnx_engine import onnx_tower

    encoder = load_clip(str(model_dir), device="cpu", precision="fp32", engine="torch")[0]
    towers = target / RCLIP_MODEL_SUBDIR
    pixels = torch.randn(2, 3, encoder.image_size, encoder.image_size)
    onnx_tower("visual", encoder.model, "encode_image", pixels, towers)  # checked against torch (cosine)
    onnx_tower("textual", encoder.model, "encode_text", encoder.tokenizer(["a photo", "a cat"]), towers)
    vocab = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    (target / "tokenizer").mkdir(parents=True, exist_ok=True)
    shutil.copy(vocab, target / "tokenizer" / vocab.name)
    return target


def fresh_rclip_dir(models: Path, work: Path) -> Path:
    """A new data dir (empty rclip database) sharing the exported model files."""
    target = Path(tempfile.mkdtemp(dir=work, prefix="rclip-"))
    for sub in (RCLIP_MODEL_SUBDIR, "tokenizer"):
        (target / sub).symlink_to(models / sub)
    return target


def setup(work: Path, count: int) -> None:
    """Models, the rclip data dir and the folders, made in a process of their own: the measuring process stays
    small, since a forked child starts with its parent's pages counted in its peak RSS."""
    from pixel_detective_dagster.models.tiny import make_random_clip, make_tiny_models
    from pixel_detective_dagster.samples.images import generate_folder

    clip = make_random_clip(ARCH, work / "clip")
    make_tiny_models(work / "tiny")  # never loaded with captions off; only its config is read
    rclip_datadir(clip, work / "rclip-models")
    generate_folder(work / "photos", count, "1mp")
    generate_folder(work / "warm", 2, "1mp", start=count)


def executable(tree: Path) -> list[str]:
    """The tree's own ``pixel-detective`` entry point (from its pyproject.toml) as a Python command line."""
    scripts = tomllib.loads((tree / "pyproject.toml").read_text())["project"]["scripts"]
    module, function = scripts["pixel-detective"].split(":")
    return [sys.executable, "-c", f"import sys; from {module} import {function}; sys.exit({function}())"]


def ingest(command: list[str], photos: Path) -> list[str]:
    return [*command, "ingest", str(photos), "--collection", "bench", "--captions", "off"]


def measure(count: int, repeats: int, baseline_tree: Path | None = None) -> list[Figure]:
    rclip = shutil.which("rclip", path=str(Path(sys.executable).parent)) or shutil.which("rclip")
    if not rclip:
        raise SystemExit("needs rclip on the PATH of this Python (pip install --no-deps rclip)")
    with tempfile.TemporaryDirectory(prefix="pd-bench-rclip-") as tmp:
        work = Path(tmp)
        subprocess.run([sys.executable, "-m", "benchmarks.rclip_peer", "--setup", str(work), str(count)], check=True)
        photos = work / "photos"
        base_env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "PIXEL_DETECTIVE_CLIP_MODEL": str(work / "clip"),
            "PIXEL_DETECTIVE_CAPTION_MODEL": str(work / "tiny" / "blip"),
            "PIXEL_DETECTIVE_DEVICE": "cpu",
        }
        runs: dict[str, list[Usage]] = defaultdict(list)
        trees = {"pd": None, **({"tree": baseline_tree} if baseline_tree else {})}
        commands = {party: executable(tree or Path.cwd()) for party, tree in trees.items()}
        for _ in range(repeats):  # interleaved: load on the shared machine hits every party alike
            envs = {}
            for party, tree in trees.items():
                home = Path(tempfile.mkdtemp(dir=work, prefix=f"{party}-"))
                envs[party] = {
                    **base_env,
                    "PIXEL_DETECTIVE_HOME": str(home / "data"),
                    "DAGSTER_HOME": str(home / "dagster"),
                    **({"PYTHONPATH": str(tree)} if tree else {}),
                }
                warm = [*commands[party], "ingest", str(work / "warm"), "--collection", "warm", "--captions", "off"]
                run_measured(warm, work, envs[party])  # the once-per-model ONNX export (rclip ships its export ready)
                runs[f"{party} first"].append(run_measured(ingest(commands[party], photos), work, envs[party]))
            rclip_env = {**base_env, "RCLIP_DATADIR": str(fresh_rclip_dir(work / "rclip-models", work))}
            query = [rclip, "-f", "-t", "1", "a photo"]
            runs["rclip first"].append(run_measured(query, photos, rclip_env))
            for party in trees:
                runs[f"{party} again"].append(run_measured(ingest(commands[party], photos), work, envs[party]))
            runs["rclip again"].append(run_measured(query, photos, rclip_env))
    median = {
        k: Usage(*(statistics.median(getattr(u, f) for u in v) for f in Usage.__dataclass_fields__))
        for k, v in runs.items()
    }
    note = f"median of {repeats}, fresh processes, interleaved; captions off; wall {{}} s vs {{}} s"
    others = {"rclip": ("rclip", "rclip 3.3.0, same weights (ONNX)")}
    if baseline_tree:
        others["tree"] = ("the baseline tree", f"the same in {baseline_tree}")
    figures = []
    for other, (label, what) in others.items():
        for case, key in (("first index", "first"), ("re-index, unchanged folder", "again")):
            mine, theirs = median[f"pd {key}"], median[f"{other} {key}"]
            figures.append(
                Figure(
                    f"{case} of {count} 1 MP JPEGs vs {label}",
                    "CPU-seconds",
                    mine.cpu_seconds,
                    theirs.cpu_seconds,
                    "s",
                    what,
                    note.format(f"{mine.wall_seconds:.1f}", f"{theirs.wall_seconds:.1f}"),
                )
            )
        figures.append(
            Figure(
                f"peak RSS, first index of {count} 1 MP JPEGs vs {label}",
                "MB",
                median["pd first"].peak_rss_mb,
                median[f"{other} first"].peak_rss_mb,
                "MB",
                what,
                f"median of {repeats}",
            )
        )
    return figures


def cases(
    quick: bool, count: int | None = None, repeats: int | None = None, baseline_tree: Path | None = None
) -> list[Figure]:
    return measure(count or (24 if quick else 300), repeats or (1 if quick else 3), baseline_tree)


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--count", type=int, help="images (default 300; 24 with --quick)")
    parser.add_argument("--repeats", type=int, help="interleaved repeats (default 3; 1 with --quick)")
    parser.add_argument(
        "--baseline-tree", type=Path, help="another checkout of the project to compare with, interleaved"
    )


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--setup":
        setup(Path(sys.argv[2]), int(sys.argv[3]))
        return
    run_module(cases, __doc__ or "", options)


if __name__ == "__main__":
    main()
