"""File names as text that every store accepts, exactly reversible to the bytes on disk.

On POSIX a file name is bytes; Python hands over the bytes that are not UTF-8 as lone surrogates
(``os.fsdecode``), which SQLite, Parquet, JSON and Qdrant payloads all refuse. Everywhere past the
scanner a name is kept in its *stored* form: valid UTF-8 names unchanged, each undecodable byte
written ``\\xNN`` (and a backslash that would read as such an escape written ``\\x5c``), so
``os_name(stored_name(n)) == n`` for every name and two different names never share a stored form.
"""

from __future__ import annotations

import os
import re

_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")
_NEEDS_ESCAPE = re.compile(r"[\udc80-\udcff]|\\(?=x[0-9a-fA-F]{2})")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return "\\x5c" if char == "\\" else f"\\x{ord(char) - 0xDC00:02x}"


def stored_name(name: str) -> str:
    """The stored (valid UTF-8, printable where the name is) form of an OS file name or relative path."""
    if name.isascii() and "\\" not in name:
        return name  # the common case, on the scanner's hot path
    return _NEEDS_ESCAPE.sub(_escape, name)


def os_name(stored: str) -> str:
    """The OS file name (``os.fsdecode`` form, lone surrogates for non-UTF-8 bytes) of a stored name."""
    if "\\" not in stored:
        return stored
    return _ESCAPE.sub(lambda m: os.fsdecode(bytes([int(m.group(1), 16)])), stored)


def stored_path(root: os.PathLike[str] | str, relative: str = "") -> str:
    """The stored form of ``root`` (an OS path) joined with the stored ``relative`` path: what people are shown."""
    text = stored_name(os.fspath(root))
    return f"{text.rstrip('/')}/{relative}" if relative else text
