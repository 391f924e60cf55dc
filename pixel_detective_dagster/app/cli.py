"""The ``pixel-detective`` command: ingest, search, collections, export, delete, rebuild, status, captions, config,
models, demo.

Each command imports only what it uses: those that need no model (status, collections, export,
config, delete, captions) never import torch or Dagster; a text search with a cached text tower skips both.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pixel_detective_dagster.app.arguments import (
    ArgumentParser,
    existing_file,
    existing_folder,
    iso_date,
    new_file,
    non_negative_int,
    positive_int,
    run_command,
    similarity,
)
from pixel_detective_dagster.catalog.scanning import DEFAULT_BATCH_SIZE
from pixel_detective_dagster.index.points import DUPLICATE_THRESHOLD, SearchFilters
from pixel_detective_dagster.storage.layout import resolve_home, validate_collection
from pixel_detective_dagster.storage.quiet import quiet
from pixel_detective_dagster.storage.settings import SECRET_KEYS, current, lookup

if TYPE_CHECKING:
    from pixel_detective_dagster.app.search import SearchRequest, SearchResponse
    from pixel_detective_dagster.index.duplicates import Duplicates  # pandas + scipy: imported by --duplicates only


def _ingest(args: argparse.Namespace) -> int:
    from pixel_detective_dagster.app.ingest_report import stage_table  # lazy: per-command imports (module docstring)
    from pixel_detective_dagster.app.search import NOT_SEMANTIC
    from pixel_detective_dagster.app.up_to_date import unchanged_ingest

    echo = functools.partial(print, flush=True)
    report = unchanged_ingest(args.path, args.collection, args.captions, echo)
    if report is None:
        from pixel_detective_dagster.app.ingest import ingest  # lazy: Dagster and the models, only for real work

        report = ingest(args.path, args.collection, args.batch_size, echo=echo, captions=args.captions)
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


def _filters(args: argparse.Namespace) -> Any:
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
    from pixel_detective_dagster.app.search import duplicates, print_results  # lazy: see the module docstring

    if args.duplicates:  # index work only, no model to load: always in-process
        found = duplicates(args.collection, args.threshold)
        if args.json:
            print(json.dumps({"collection": args.collection, **found.as_dict(args.limit)}, indent=2))
        else:
            _print_duplicates(found, args.limit)
        return 0
    from pixel_detective_dagster.app.serve.discovery import find_service  # lazy: urllib + http.client, searches only

    url = find_service(resolve_home())
    response = _search_through(args, url) if url else _search_in_process(args)
    if url:  # said after the search, so an error stays one line; in-process is the quiet default
        print(f"searched through the running search service at {url}", file=sys.stderr)
    if args.json:
        print(json.dumps(response.as_json(), indent=2))
    else:
        print_results(response)
    return 0


def _search_request(args: argparse.Namespace) -> SearchRequest:
    from pixel_detective_dagster.app.search import SearchRequest  # lazy: per-command imports (module docstring)

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
    from pixel_detective_dagster.app.search import SearchResponse  # lazy: per-command imports (module docstring)
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
    from pixel_detective_dagster.app.admin import open_admin  # lazy: heavy start-up, unneeded by other commands

    with open_admin() as admin:
        status = admin.status(args.collection)
        status["reliability"] = admin.reliability(args.collection)
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        for name, value in status.items():
            if name not in ("failures", "reliability"):
                print(f"{name:>21}: {value}")
        for failure in status["failures"]:
            print(f"  failed: {failure['path']}: {failure['reason']}")
        _print_reliability(status["reliability"])
    return 0


def _print_reliability(section: dict[str, Any]) -> None:
    """Issue 21's part of ``status``: integrity warnings (each naming its repair) and the ingest in flight."""
    for line in section["warnings"]:
        print(f"  warning: {line}")
    if (ingest := section["ingest"]) and ingest["state"] == "in flight":
        print(f"  ingest in flight: pid {ingest.get('pid')}, batches {', '.join(ingest.get('batches') or []) or '-'}")


def _captions(args: argparse.Namespace) -> int:
    from pixel_detective_dagster.app.admin import open_admin  # lazy: heavy start-up, unneeded by other commands

    with open_admin() as admin:
        shown = admin.captions(args.collection, args.setting)
    print(f"{args.collection}: captions {shown}")
    return 0


def _config(args: argparse.Namespace) -> int:
    settings = current()
    if args.action in ("set", "unset"):
        if not args.key or (args.action == "set") != (args.value is not None):
            print(f"usage: pixel-detective config {args.action} KEY" + (" VALUE" if args.action == "set" else ""))
            return 2
        settings.update({args.key: args.value if args.action == "set" else None})
        shown = "***" if lookup(args.key).key in SECRET_KEYS else args.value
        print(f"{args.key} {'= ' + shown if args.value is not None else 'removed'} in {settings.path}")
        return 0
    rows = [
        {
            "key": r.setting.key,
            "value": "***" if r.setting.key in SECRET_KEYS and r.value else r.value,
            "source": r.source,
            "env": r.setting.env,
        }
        for r in settings.all()
    ]
    if args.json:
        print(json.dumps({"data_dir": str(settings.home), "settings_file": str(settings.path), "settings": rows}))
        return 0
    print(f"data directory: {settings.home}  ({settings.home_source()})")
    print(f"settings file:  {settings.path}{'' if settings.path.exists() else '  (not written yet)'}")
    for row in rows:
        value = "(unset)" if row["value"] is None else row["value"]
        print(f"  {row['key']:<26} = {value!s:<40} ({row['source']}; env {row['env']})")
    return 0


def _models_use(args: argparse.Namespace) -> int:
    from pixel_detective_dagster.app.model_setup import use_models  # lazy: per-command imports (module docstring)

    settings = current()
    written = use_models(args.target, settings, args.pretrained)
    for key, value in written.items():
        print(f"{key} = {value}" if value is not None else f"{key}: back to its default")
    print(f"saved in {settings.path}; new ingests, searches and the Dagster code location (after a reload) use it")
    return 0


def _models_fetch(args: argparse.Namespace) -> int:
    from pixel_detective_dagster.app.model_setup import fetch_models  # lazy: per-command imports (module docstring)

    for line in fetch_models(current()):
        print(line)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from pixel_detective_dagster.app.serve.run import serve  # lazy: heavy start-up, unneeded by other commands

    return serve(args.host, args.port, args.collection and validate_collection(args.collection))


def _make_tiny(args: argparse.Namespace) -> int:
    from pixel_detective_dagster.models.tiny import make_tiny_models  # lazy: heavy start-up, unneeded by other commands

    paths = make_tiny_models(Path(args.dir))
    print(f"# use them: pixel-detective models use {Path(args.dir).resolve()}   (or export these)")
    print(f"export PIXEL_DETECTIVE_CLIP_MODEL={paths['clip'].resolve()}")
    print(f"export PIXEL_DETECTIVE_CAPTION_MODEL={paths['blip'].resolve()}")
    print("# tiny random-weight models: for tests and demos only, results are NOT semantic")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from pixel_detective_dagster.app.demo import run_demo  # lazy: heavy start-up, unneeded by other commands

    return run_demo(Path(args.folder), args.query)


def _dev(args: argparse.Namespace) -> int:
    from pixel_detective_dagster.app.dev import run_dev  # lazy: per-command imports (module docstring)

    return run_dev(args.host, args.port)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="pixel-detective", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="show library warnings and progress bars")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser

    def add_parser(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return add(name, parents=[common], **kwargs)

    commands.add_parser = add_parser  # type: ignore[method-assign]

    p = commands.add_parser("ingest", help="register a folder as a collection and index it through Dagster")
    p.add_argument("path", type=existing_folder)
    p.add_argument("--collection", required=True)
    p.add_argument(
        "--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE, help="files per ingest batch (partition)"
    )
    p.add_argument(
        "--captions",
        metavar="off|default|MODEL",
        help="this collection's captions: off, the configured model, or another caption model (kept for later runs)",
    )
    p.set_defaults(func=_ingest)

    p = commands.add_parser(
        "search", help="search a collection: text, image, more-like-this, captions, hybrid, filters"
    )
    p.add_argument("text", nargs="?", help="text query, matched against images with CLIP")
    p.add_argument("--collection", required=True)
    query = p.add_argument_group("other query kinds (instead of TEXT)")
    query.add_argument(
        "--image", type=existing_file, help="find images similar to this file (in the collection or not)"
    )
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
        type=similarity,
        default=DUPLICATE_THRESHOLD,
        help=f"CLIP cosine similarity in (0, 1] for --duplicates (default {DUPLICATE_THRESHOLD})",
    )
    where = p.add_argument_group("filters (combine with any query, or use alone)")
    where.add_argument(
        "--taken-from", type=iso_date, metavar="DATE", help="EXIF capture date/time from (ISO, inclusive)"
    )
    where.add_argument("--taken-to", type=iso_date, metavar="DATE", help="EXIF capture date/time to (ISO, inclusive)")
    where.add_argument("--camera", help="EXIF camera make or model (exact)")
    where.add_argument("--folder", help="only images under this folder (relative to the collection root)")
    where.add_argument("--cluster", type=int)
    for name in ("min-width", "max-width", "min-height", "max-height"):
        where.add_argument(f"--{name}", type=non_negative_int, metavar="PX")
    where.add_argument("--caption-contains", metavar="WORDS", help="captions containing every word")
    p.add_argument("--limit", type=non_negative_int, default=10)
    p.add_argument("--offset", type=non_negative_int, default=0, help="skip this many results (pagination)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_search)

    p = commands.add_parser("collections", help="list collections with file and point counts")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_collections)

    p = commands.add_parser(
        "export", help="write a collection's points (paths, caption, filterable fields, map, clusters) to Parquet"
    )
    p.add_argument("--collection", required=True)
    p.add_argument("--out", required=True, type=new_file, help="output .parquet file")
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

    p = commands.add_parser(
        "captions", help="show or set a collection's captions: off, default (the configured model) or a model"
    )
    p.add_argument("--collection", required=True)
    p.add_argument("setting", nargs="?", metavar="off|default|MODEL", help="new setting (applies to later batches)")
    p.set_defaults(func=_captions)

    p = commands.add_parser("config", help="show each setting, its value and where it came from; set / unset one")
    p.add_argument("action", nargs="?", choices=("show", "set", "unset"), default="show")
    p.add_argument("key", nargs="?", help="e.g. clip.model (see `pixel-detective config`)")
    p.add_argument("value", nargs="?")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_config)

    p = commands.add_parser("serve", help="search service and web page with models kept loaded (FastAPI)")
    p.add_argument(
        "--host", default="127.0.0.1", help="bind address; other than loopback needs PIXEL_DETECTIVE_API_TOKEN"
    )
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--collection", help="collection the page opens with (default: the first)")
    p.set_defaults(func=_serve)

    models = commands.add_parser("models", help="choose, fetch or make models").add_subparsers(
        dest="models_command", required=True
    )
    p = models.add_parser("use", parents=[common], help="choose the models (saved in the data directory's settings)")
    p.add_argument(
        "target",
        metavar="DIR|NAME",
        help="a model directory (CLIP, captioner, or one with clip/ and blip/), an open_clip architecture or "
        "hf-hub: id, a captioner hub id, 'tiny' (random-weight test models) or 'default'",
    )
    p.add_argument("--pretrained", help="open_clip pretrained tag or checkpoint file, for an architecture name")
    p.set_defaults(func=_models_use)
    p = models.add_parser("fetch", parents=[common], help="download the configured models' weights (needs network)")
    p.set_defaults(func=_models_fetch)
    p = models.add_parser("make-tiny", parents=[common], help="write tiny random-weight CLIP and BLIP models")

    p.add_argument("dir")
    p.set_defaults(func=_make_tiny)

    p = commands.add_parser("dev", help="serve the Dagster UI, sensors and daemon (make dev); Ctrl-C / SIGTERM stop")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.set_defaults(func=_dev)

    p = commands.add_parser("demo", help="generate a demo folder from bundled photos, ingest and search it")
    p.add_argument("--folder", default="demo_images")
    p.add_argument("--query", default="a cat")
    p.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; exit status 0 ok, 1 some work failed, 2 a user error (one line on stderr), 130 Ctrl-C."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # a usage error (already printed as one line) or --help
        return exc.code if isinstance(exc.code, int) else 0
    quiet(args.verbose)
    return run_command(args.func, args)
