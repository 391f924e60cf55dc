"""The ``pixel-detective`` command: ingest, search, collections, export, delete, rebuild, status, models, demo."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pixel_detective_dagster.app.search import NOT_SEMANTIC, SearchRequest, SearchResponse, print_results
from pixel_detective_dagster.catalog.scanning import DEFAULT_BATCH_SIZE
from pixel_detective_dagster.catalog.store import UnknownCollectionError
from pixel_detective_dagster.index.duplicates import DEFAULT_THRESHOLD, Duplicates
from pixel_detective_dagster.index.vector_index import SearchFilters
from pixel_detective_dagster.models.registry import ModelLoadError
from pixel_detective_dagster.storage.layout import InvalidNameError, validate_collection


def _ingest(args: argparse.Namespace) -> int:
    from pixel_detective_dagster.app.ingest import ingest, stage_table  # lazy: heavy start-up, unneeded elsewhere

    report = ingest(Path(args.path), args.collection, args.batch_size, echo=lambda line: print(line, flush=True))
    if report.stages:
        print(stage_table(report.stages))
    if report.random_weights:
        print(NOT_SEMANTIC)
    for path, reason in report.failures:
        print(f"  failed: {path}: {reason}")
    rate = report.upserts / report.seconds if report.seconds else 0.0
    verdict = "done" if report.success else "FAILED"
    print(
        f"{verdict}: {report.upserts} new/changed, {report.deletes} deleted, {len(report.failures)} bad file(s), "
        f"{len(report.batches)} batch(es) in {report.seconds:.1f} s ({rate:.1f} images/s)"
        + (f"; run {report.run_id}" if report.run_id else "")
    )
    return 0 if report.success else 1


def _filters(args: argparse.Namespace) -> SearchFilters:
    return SearchFilters(
        taken_from=args.taken_from,
        taken_to=args.taken_to,
        camera=args.camera,
        folder=args.folder,
        cluster=args.cluster,
        min_width=args.min_width,
        max_width=args.max_width,
        min_height=args.min_height,
        max_height=args.max_height,
        caption_contains=args.caption_contains,
    )


def _search(args: argparse.Namespace) -> int:
    if args.duplicates:  # index work only, no model to load: always in-process
        from pixel_detective_dagster.app.search import duplicates  # lazy: heavy start-up

        found = duplicates(args.collection, args.threshold)
        if args.json:
            print(json.dumps({"collection": args.collection, **found.as_dict(args.limit)}, indent=2))
        else:
            _print_duplicates(found, args.limit)
        return 0
    from pixel_detective_dagster.app.serve.discovery import find_service
    from pixel_detective_dagster.storage.layout import resolve_home

    url = find_service(resolve_home())
    response = _search_through(args, url) if url else _search_in_process(args)
    print(  # after the search, so an error stays one line
        f"searched through the running search service at {url}"
        if url
        else "searched in-process (no search service running; `pixel-detective serve` keeps models loaded)",
        file=sys.stderr,
    )
    if args.json:
        print(json.dumps(response.as_json(), indent=2))
    else:
        print_results(response)
    return 0


def _search_request(args: argparse.Namespace) -> SearchRequest:
    return SearchRequest(
        validate_collection(args.collection),
        text=args.text,
        image=Path(args.image) if args.image else None,
        like=args.like,
        caption=args.caption,
        hybrid=args.hybrid,
        filters=_filters(args),
        limit=args.limit,
        offset=args.offset,
    )


def _search_through(args: argparse.Namespace, url: str) -> SearchResponse:
    from pixel_detective_dagster.app.serve.client import ServiceClient

    request = _search_request(args)  # a malformed request fails here, as in-process
    return SearchResponse.from_json(ServiceClient(url).search(request.collection, request.mode, args))


def _search_in_process(args: argparse.Namespace) -> SearchResponse:
    from pixel_detective_dagster.app.search import run_search  # lazy: heavy start-up, unneeded by other commands

    return run_search(_search_request(args))


def _print_duplicates(found: Duplicates, limit: int) -> None:
    print(found.summary())
    for title, groups in (("exact copies", found.exact), ("near-duplicate groups", found.near)):
        if groups:
            print(f"{title} (showing {min(limit, len(groups))} of {len(groups)}; --limit N for more):")
        for n, group in enumerate(groups[:limit], 1):
            print(f"  {n}. {len(group.members)} image(s), {group.files} file(s), top similarity {group.top:.4f}")
            for member in group.members:
                score = "" if group.kind == "exact" else f"{member.best:.4f}  "
                print("\n".join(f"       {score}{path}" for path in member.paths))


def _collections(args: argparse.Namespace) -> int:
    from pixel_detective_dagster.app.admin import open_admin  # lazy: heavy start-up, unneeded by other commands

    with open_admin() as admin:
        rows = admin.collections()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{len(rows)} collection(s)")
    for row in rows:
        print(
            f"  {row['collection']:<24} {row['points']:>7} points  {row['files']:>7} files  {row['failed']:>5} failed  "
            f"{row['folder']}  [{', '.join(row['vectors']) or 'no vectors'}]"
        )
    return 0


def _export(args: argparse.Namespace) -> int:
    from pixel_detective_dagster.app.admin import open_admin  # lazy: heavy start-up, unneeded by other commands

    with open_admin() as admin:
        n = admin.export(args.collection, Path(args.out), args.with_vectors)
    print(f"wrote {n} point(s) of {args.collection} to {args.out}")
    return 0


def _delete(args: argparse.Namespace) -> int:
    if not args.yes:
        print(
            f"this deletes collection {args.collection!r}: its index, artifacts and catalog entries "
            "(your image files are not touched); add --yes to confirm",
            file=sys.stderr,
        )
        return 2
    from pixel_detective_dagster.app.admin import open_admin  # lazy: heavy start-up, unneeded by other commands

    with open_admin() as admin:
        keys = admin.delete(args.collection)
    print(f"deleted collection {args.collection} ({len(keys)} batch(es))")
    return 0


def _rebuild(args: argparse.Namespace) -> int:
    from pixel_detective_dagster.app.admin import open_admin  # lazy: heavy start-up, unneeded by other commands

    with open_admin() as admin:
        report = admin.rebuild(args.collection)
    print(
        f"rebuilt {args.collection} from {report['batches']} batch(es) of stored artifacts: {report['points']} point(s)"
    )
    return 0


def _status(args: argparse.Namespace) -> int:
    from dagster import build_resources  # lazy: heavy start-up, unneeded by other commands

    from pixel_detective_dagster.defs.resources import (
        resources_from_env,
    )  # lazy: heavy start-up, unneeded by other commands

    with build_resources(resources_from_env()) as resources:
        catalog = resources.storage.catalog
        root = catalog.collection(args.collection).root
        counts = catalog.status_counts(args.collection)
        index = resources.vector_index.for_collection(resources.storage.layout, args.collection).health()
        failures = catalog.failures(args.collection)
    status = {
        "collection": args.collection,
        "folder": str(root),
        **counts,
        "index_points": index.points,  # None while another process loads or optimizes the index
        "index_indexed_vectors": index.indexed_vectors,
        "index_segments": index.segments,
        "index_optimizer": index.optimizer,
        "failures": [{"path": p, "reason": r} for p, r in failures],
    }
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        for name, value in status.items():
            if name != "failures":
                print(f"{name:>21}: {value}")
        for path, reason in failures:
            print(f"  failed: {path}: {reason}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from pixel_detective_dagster.app.serve.run import serve  # lazy: heavy start-up, unneeded by other commands

    return serve(args.host, args.port, args.collection and validate_collection(args.collection))


def _make_tiny(args: argparse.Namespace) -> int:
    from pixel_detective_dagster.models.tiny import make_tiny_models  # lazy: heavy start-up, unneeded by other commands

    paths = make_tiny_models(Path(args.dir))
    print(f"export PIXEL_DETECTIVE_CLIP_MODEL={paths['clip'].resolve()}")
    print(f"export PIXEL_DETECTIVE_CAPTION_MODEL={paths['blip'].resolve()}")
    print("# tiny random-weight models: for tests and demos only, results are NOT semantic")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from pixel_detective_dagster.app.demo import run_demo  # lazy: heavy start-up, unneeded by other commands

    return run_demo(Path(args.folder), args.query)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pixel-detective", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("ingest", help="register a folder as a collection and index it through Dagster")
    p.add_argument("path")
    p.add_argument("--collection", required=True)
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="files per ingest batch (partition)")
    p.set_defaults(func=_ingest)

    p = commands.add_parser(
        "search", help="search a collection: text, image, more-like-this, captions, hybrid, filters"
    )
    p.add_argument("text", nargs="?", help="text query, matched against images with CLIP")
    p.add_argument("--collection", required=True)
    query = p.add_argument_group("other query kinds (instead of TEXT)")
    query.add_argument("--image", help="find images similar to this file (in the collection or not)")
    query.add_argument("--like", metavar="POINT", help="more like this point id or collection image path")
    query.add_argument("--caption", metavar="WORDS", help="rank captions by full-text (BM25) relevance to WORDS")
    query.add_argument("--hybrid", action="store_true", help="fuse CLIP and caption rankings of TEXT (RRF)")
    query.add_argument(
        "--duplicates",
        action="store_true",
        help="exact copies and near-duplicate groups (all pairs at or above --threshold); --limit groups of each",
    )
    query.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help=f"CLIP cosine similarity for --duplicates (default {DEFAULT_THRESHOLD})",
    )
    where = p.add_argument_group("filters (combine with any query, or use alone)")
    where.add_argument("--taken-from", metavar="DATE", help="EXIF capture date/time from (ISO, inclusive)")
    where.add_argument("--taken-to", metavar="DATE", help="EXIF capture date/time to (ISO, inclusive)")
    where.add_argument("--camera", help="EXIF camera make or model (exact)")
    where.add_argument("--folder", help="only images under this folder (relative to the collection root)")
    where.add_argument("--cluster", type=int)
    for name in ("min-width", "max-width", "min-height", "max-height"):
        where.add_argument(f"--{name}", type=int, metavar="PX")
    where.add_argument("--caption-contains", metavar="WORDS", help="captions containing every word")
    p.add_argument("--limit", type=int, default=10)
    p.add_argument("--offset", type=int, default=0, help="skip this many results (pagination)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_search)

    p = commands.add_parser("collections", help="list collections with file and point counts")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_collections)

    p = commands.add_parser(
        "export", help="write a collection's points (paths, caption, filterable fields, map, clusters) to Parquet"
    )
    p.add_argument("--collection", required=True)
    p.add_argument("--out", required=True, help="output .parquet file")
    p.add_argument("--with-vectors", action="store_true", help="add each CLIP model's vectors (a list column each)")
    p.set_defaults(func=_export)

    p = commands.add_parser("delete", help="delete a collection's index, artifacts and catalog entries")
    p.add_argument("--collection", required=True)
    p.add_argument("--yes", action="store_true", help="confirm")
    p.set_defaults(func=_delete)

    p = commands.add_parser("rebuild", help="rebuild a collection's index from stored artifacts (no model runs)")
    p.add_argument("--collection", required=True)
    p.set_defaults(func=_rebuild)

    p = commands.add_parser("status", help="counts of files seen, indexed and failed; index health")
    p.add_argument("--collection", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_status)

    p = commands.add_parser("serve", help="search service and web page with models kept loaded (FastAPI)")
    p.add_argument(
        "--host", default="127.0.0.1", help="bind address; other than loopback needs PIXEL_DETECTIVE_API_TOKEN"
    )
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--collection", help="collection the page opens with (default: the first)")
    p.set_defaults(func=_serve)

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
    except (
        ModelLoadError,
        UnknownCollectionError,
        InvalidNameError,
        FileNotFoundError,
        ValueError,
        RuntimeError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
