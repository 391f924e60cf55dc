"""Command-line argument types and the error contract: every mistake a user can make is one line, exit 2.

The parser refuses bad values before any work starts (``--batch-size 0``, ``--limit -1``, a
threshold of 5, a date that is not ISO, a missing ``--image`` file); errors found while working
(unknown collection, a damaged catalog or index file, a file that is not an image, a full disk)
are printed as one ``error:`` line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import NoReturn

from pixel_detective_dagster.catalog.store import UnknownCollectionError
from pixel_detective_dagster.media.formats.base import ImageError
from pixel_detective_dagster.storage.layout import InvalidNameError
from pixel_detective_dagster.storage.names import stored_name

EXIT_OK = 0
EXIT_FAILED = 1  # the command ran, but some of its work failed (e.g. an ingest batch); details above it
EXIT_USAGE = 2  # bad arguments or input a user can fix; one "error:" line on stderr
EXIT_INTERRUPTED = 130  # Ctrl-C; an interrupted ingest resumes where it stopped on the next run

# Errors a user can cause or fix: shown as one line. Anything else is a bug and keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (
    UnknownCollectionError,
    InvalidNameError,
    ImageError,
    OSError,  # missing files, permissions, full disk (OutOfSpaceError), unreachable Qdrant server
    ValueError,
    RuntimeError,  # model load errors, damaged catalog / index files (their messages name the file)
    sqlite3.DatabaseError,
)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (with where to find help) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def one_line(text: object) -> str:
    """``text`` on a single line (messages of wrapped exceptions may span several)."""
    return " ".join(str(text).split())


def run_command(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a sub-command; a user error becomes one ``error:`` line on stderr and exit status 2."""
    try:
        return func(args)
    except USER_ERRORS as exc:
        print(f"error: {one_line(exc) or type(exc).__name__}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _bounded_int(minimum: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is not {what}")
        return value

    return parse


positive_int = _bounded_int(1, "a number >= 1")
non_negative_int = _bounded_int(0, "a number >= 0")


def similarity(text: str) -> float:
    """A cosine-similarity threshold in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not a similarity in (0, 1]")
    return value


def iso_date(text: str) -> str:
    """An ISO date (2024-05-01) or date-time (2024-05-01T10:00); returned as given."""
    for parse in (date.fromisoformat, datetime.fromisoformat):
        try:
            parse(text)
            return text
        except ValueError:
            continue
    raise argparse.ArgumentTypeError(f"{text!r} is not an ISO date (YYYY-MM-DD) or date-time (YYYY-MM-DDTHH:MM)")


def _existing(is_kind: Callable[[Path], bool], noun: str, kind: str) -> Callable[[str], Path]:
    def parse(text: str) -> Path:
        path = Path(text)
        if not path.exists():
            raise argparse.ArgumentTypeError(f"{noun} {stored_name(text)} does not exist")
        if not is_kind(path):
            raise argparse.ArgumentTypeError(f"{stored_name(text)} is not {kind}")
        return path

    return parse


existing_folder = _existing(Path.is_dir, "folder", "a folder")
existing_file = _existing(Path.is_file, "file", "a regular file")


def new_file(text: str) -> Path:
    """An output file whose folder exists."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{stored_name(text)} is a folder, not a file")
    if not path.absolute().parent.is_dir():
        raise argparse.ArgumentTypeError(f"folder {stored_name(str(path.absolute().parent))} does not exist")
    return path
