"""The ``pixel-detective`` command: ingest, search, status, models make-tiny, demo."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pixel_detective_dagster.catalog import UnknownCollectionError
from pixel_detective_dagster.layout import InvalidNameError
from pixel_detective_dagster.models.registry import ModelLoadError
from pixel_detective_dagster.scanning import DEFAULT_BATCH_SIZE
from pixel_detective_dagster.searching import NOT_SEMANTIC, SearchResponse


def _ingest(args: argparse.Namespace) -> int:
    from pixel_detective_dagster.ingest import ingest

    report = ingest(Path(args.path), args.collection, args.batch_size, echo=lambda line: print(line, flush=True))
    if report.random_weights:
        print(NOT_SEMANTIC)
    for path, reason in report.failures:
        print(f"  failed: {path}: {reason}")
    rate = report.upserts / report.seconds if report.seconds else 0.0
    verdict = "done" if report.success else "FAILED"
    print(f"{verdict}: {report.upserts} new/changed, {report.deletes} deleted, {len(report.failures)} bad file(s), "
          f"{len(report.batches)} batch(es) in {report.seconds:.1f} s ({rate:.1f} images/s)"
          + (f"; run {report.run_id}" if report.run_id else ""))  # fmt: skip
    return 0 if report.success else 1


def print_results(response: SearchResponse) -> None:
    if response.random_weights:
        print(NOT_SEMANTIC)
    print(f"{len(response.results)} result(s) for {response.query!r} in {response.collection} ({response.model})")
    for r in response.results:
        print(f"{r.rank:3d}. {r.score:+.4f}  {r.path}\n       {r.caption}")


def _search(args: argparse.Namespace) -> int:
    from pixel_detective_dagster.searching import search

    image = Path(args.image) if args.image else None
    response = search(args.collection, text=args.text, image=image, limit=args.limit)
    if args.json:
        print(json.dumps({"collection": response.collection, "query": response.query, "model": response.model,
                          "not_semantic": response.random_weights,
                          "results": [r.as_dict() for r in response.results]}, indent=2))  # fmt: skip
    else:
        print_results(response)
    return 0


def _status(args: argparse.Namespace) -> int:
    from dagster import build_resources

    from pixel_detective_dagster.resources import resources_from_env

    with build_resources(resources_from_env()) as resources:
        catalog = resources.storage.catalog
        root = catalog.collection(args.collection).root
        counts = catalog.status_counts(args.collection)
        points = resources.vector_index.for_collection(resources.storage.layout, args.collection).count()
        failures = catalog.failures(args.collection)
    status = {"collection": args.collection, "folder": str(root), **counts, "index_points": points,
              "failures": [{"path": p, "reason": r} for p, r in failures]}  # fmt: skip
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        for name, value in status.items():
            if name != "failures":
                print(f"{name:>16}: {value}")
        for path, reason in failures:
            print(f"  failed: {path}: {reason}")
    return 0


def _make_tiny(args: argparse.Namespace) -> int:
    from pixel_detective_dagster.models.tiny import make_tiny_models

    paths = make_tiny_models(Path(args.dir))
    print(f"export PIXEL_DETECTIVE_CLIP_MODEL={paths['clip'].resolve()}")
    print(f"export PIXEL_DETECTIVE_CAPTION_MODEL={paths['blip'].resolve()}")
    print("# tiny random-weight models: for tests and demos only, results are NOT semantic")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from pixel_detective_dagster.demo import run_demo

    return run_demo(Path(args.folder), args.query)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pixel-detective", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("ingest", help="register a folder as a collection and index it through Dagster")
    p.add_argument("path")
    p.add_argument("--collection", required=True)
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="files per ingest batch (partition)")
    p.set_defaults(func=_ingest)

    p = commands.add_parser("search", help="search a collection by text or by an example image")
    p.add_argument("text", nargs="?")
    p.add_argument("--image", help="find images similar to this file")
    p.add_argument("--collection", required=True)
    p.add_argument("--limit", type=int, default=10)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_search)

    p = commands.add_parser("status", help="counts of files seen, indexed and failed")
    p.add_argument("--collection", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_status)

    models = commands.add_parser("models", help="model utilities").add_subparsers(dest="models_command", required=True)
    p = models.add_parser("make-tiny", help="write tiny random-weight CLIP and BLIP models for tests")
    p.add_argument("dir")
    p.set_defaults(func=_make_tiny)

    p = commands.add_parser("demo", help="generate a demo folder from bundled photos, ingest and search it")
    p.add_argument("--folder", default="demo_images")
    p.add_argument("--query", default="a cat")
    p.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ModelLoadError, UnknownCollectionError, InvalidNameError, FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
