"""``make demo``: a demo library from bundled photos, real models if loadable, else tiny ones (said loudly).

The model choice is written to the data directory's settings.toml, so the commands the README
suggests next (search, ``make dev``, the folder sensor) use the same models with no exports.
"""

from __future__ import annotations

import os
from pathlib import Path

from pixel_detective_dagster.app.ingest import ingest
from pixel_detective_dagster.app.model_setup import use_models
from pixel_detective_dagster.app.search import print_results, search
from pixel_detective_dagster.models.availability import load_local
from pixel_detective_dagster.models.captioner import load_captioner
from pixel_detective_dagster.models.clip import load_clip
from pixel_detective_dagster.models.registry import ModelLoadError
from pixel_detective_dagster.samples.images import generate_demo_folder
from pixel_detective_dagster.storage.settings import Settings, current

BANNER = "=" * 78


def choose_models(settings: Settings) -> bool:
    """Try the configured (or default pretrained) models from disk; fall back to tiny ones. True if tiny."""
    allow = settings.get("models.download")
    clip, caption = settings.get("clip.model"), settings.get("caption.model")
    print(f"loading models {clip} and {caption} ...", flush=True)
    try:
        load_local("CLIP", clip, allow, lambda: load_clip(clip, settings.get("clip.pretrained")))
        load_local("caption", caption, allow, lambda: load_captioner(caption))
        return False
    except ModelLoadError as exc:
        written = use_models("tiny", settings)
        print(BANNER)
        print("Real pretrained weights could not be loaded on this machine:")
        print(f"  {str(exc).splitlines()[0][:400]}")
        print("FALLING BACK to tiny RANDOM-WEIGHT models. Everything below runs for real, but the")
        print("embeddings, captions and search rankings are NOT semantic.")
        print(f"Wrote this choice to {settings.path} ({', '.join(k for k in written if written[k])}),")
        print("so search, `make dev` and the folder sensor use the same models. For real models:")
        print("`pixel-detective models fetch` (network) or `pixel-detective models use DIR`, then re-ingest.")
        print(BANNER)
        return True


def run_demo(folder: Path, query: str) -> int:
    if not folder.exists():
        print(f"generating demo images in {folder} from scikit-image's bundled photographs ...")
        generate_demo_folder(folder)
    choose_models(current())
    report = ingest(folder, "demo", echo=lambda line: print(line, flush=True))
    if not report.success:
        print("demo ingest failed")
        return 1
    print(f"ingested in {report.seconds:.1f} s; bad files: {len(report.failures)}")
    print_results(search("demo", text=query, limit=5))
    print(f"Open the Dagster UI with `make dev` to see the runs (DAGSTER_HOME={os.environ['DAGSTER_HOME']}).")
    return 0
