"""``make demo``: a demo library from bundled photos, real models if loadable, else tiny ones (said loudly)."""

from __future__ import annotations

import os
from pathlib import Path

from pixel_detective_dagster.app.ingest import ingest
from pixel_detective_dagster.app.search import print_results, search
from pixel_detective_dagster.models.captioner import CAPTION_MODEL_ENV, load_captioner
from pixel_detective_dagster.models.clip import CLIP_MODEL_ENV, load_clip
from pixel_detective_dagster.models.registry import ModelLoadError
from pixel_detective_dagster.models.tiny import make_tiny_models
from pixel_detective_dagster.samples.images import generate_demo_folder
from pixel_detective_dagster.storage.layout import resolve_home

BANNER = "=" * 78


def choose_models() -> bool:
    """Try the configured (or default pretrained) models offline; fall back to tiny ones. True if tiny."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        load_clip(os.environ.get(CLIP_MODEL_ENV) or "ViT-B-32", os.environ.get("PIXEL_DETECTIVE_CLIP_PRETRAINED"))
        load_captioner(os.environ.get(CAPTION_MODEL_ENV) or "Salesforce/blip-image-captioning-base")
        return False
    except ModelLoadError as exc:
        tiny_dir = resolve_home() / "models" / "tiny"
        paths = (
            make_tiny_models(tiny_dir)
            if not (tiny_dir / "blip" / "config.json").exists()
            else {"clip": tiny_dir / "clip", "blip": tiny_dir / "blip"}
        )
        os.environ[CLIP_MODEL_ENV] = str(paths["clip"])
        os.environ[CAPTION_MODEL_ENV] = str(paths["blip"])
        print(BANNER)
        print("Real pretrained weights could not be loaded on this machine (no network, nothing cached):")
        print(f"  {str(exc).splitlines()[0][:300]}")
        print("FALLING BACK to tiny RANDOM-WEIGHT models. Everything below runs for real, but the")
        print("embeddings, captions and search rankings are NOT semantic.")
        print(f"To use real models set {CLIP_MODEL_ENV} / PIXEL_DETECTIVE_CLIP_PRETRAINED / {CAPTION_MODEL_ENV}.")
        print(BANNER)
        return True


def run_demo(folder: Path, query: str) -> int:
    if not folder.exists():
        print(f"generating demo images in {folder} from scikit-image's bundled photographs ...")
        generate_demo_folder(folder)
    choose_models()
    report = ingest(folder, "demo", echo=lambda line: print(line, flush=True))
    if not report.success:
        print("demo ingest failed")
        return 1
    print(f"ingested in {report.seconds:.1f} s; bad files: {len(report.failures)}")
    print_results(search("demo", text=query, limit=5))
    print(f"Open the Dagster UI with `make dev` to see the runs (DAGSTER_HOME={os.environ['DAGSTER_HOME']}).")
    return 0
