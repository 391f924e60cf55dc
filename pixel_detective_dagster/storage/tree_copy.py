"""Copy a directory tree keeping sparse files sparse (an index's pre-allocated mmap pages are mostly holes)."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

_CHUNK = 8 * 1024 * 1024


def copy_tree_sparse(source: Path, target: Path) -> int:
    """Copy ``source`` to the new directory ``target``; returns the bytes of data copied (holes are skipped)."""
    copied = 0
    for folder, _, files in os.walk(source):
        destination = target / Path(folder).relative_to(source)
        destination.mkdir(parents=True, exist_ok=True)
        for name in files:
            copied += _copy_file_sparse(Path(folder) / name, destination / name)
    return copied


def _copy_file_sparse(source: Path, target: Path) -> int:
    """Copy the data regions of one file (SEEK_DATA / SEEK_HOLE) and leave its holes as holes."""
    with source.open("rb") as src, target.open("wb") as dst:
        size = os.fstat(src.fileno()).st_size
        try:
            regions = _data_regions(src.fileno(), size)
        except OSError:  # no hole support on this file system: copy every byte
            src.seek(0)
            shutil.copyfileobj(src, dst, _CHUNK)
            return size
        copied = 0
        for start, end in regions:
            src.seek(start)
            dst.seek(start)
            while start < end:
                block = src.read(min(_CHUNK, end - start))
                dst.write(block)
                start += len(block)
                copied += len(block)
        dst.truncate(size)
    return copied


def _data_regions(fd: int, size: int) -> list[tuple[int, int]]:
    regions, offset = [], 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole is left
                break
            raise
        end = os.lseek(fd, start, os.SEEK_HOLE)
        regions.append((start, end))
        offset = end
    return regions
