"""Names and on-disk layout of the data directory.

Everything Pixel Detective stores lives under one data directory (``PIXEL_DETECTIVE_HOME``,
default ``.pixel_detective/`` in the working directory)::

    catalog.sqlite                 collections, files seen, ingest batches
    features.sqlite                embeddings and captions cached by (model, content hash)
    thumbnails/<size>/<ab>/<hash>.<ext>   content-addressed thumbnail store
    batches/<batch key>/*.parquet  per-batch asset outputs
    collections/<name>/            per-collection projection artifacts
    index/<name>/                  embedded Qdrant (qdrant-edge) shard
    CACHEDIR.TAG                   marks the directory as a cache: scanners and backup tools skip it
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "PIXEL_DETECTIVE_HOME"
DEFAULT_HOME = ".pixel_detective"
PARTITIONS_NAME = "image_batches"
CACHE_TAG = "CACHEDIR.TAG"
CACHE_TAG_SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"  # https://bford.info/cachedir/

_COLLECTION_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_BATCH_RE = re.compile(r"^(?P<collection>[a-z0-9][a-z0-9_-]{0,62})-(?P<seq>\d{6,})$")


class InvalidNameError(ValueError):
    """A collection name or batch key that could escape the data directory or confuse Qdrant."""


def validate_collection(name: str) -> str:
    """Return ``name`` if it is a safe collection name (lowercase letters, digits, ``-``, ``_``)."""
    if not _COLLECTION_RE.fullmatch(name or ""):
        raise InvalidNameError(
            f"invalid collection name {name!r}: use 1-63 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return name


def batch_key(collection: str, seq: int) -> str:
    """Partition key of a collection's ``seq``-th ingest batch, e.g. ``holiday-000003``."""
    return f"{validate_collection(collection)}-{seq:06d}"


def parse_batch_key(key: str) -> tuple[str, int]:
    """Split a batch key into (collection, sequence number)."""
    match = _BATCH_RE.fullmatch(key)
    if not match:
        raise InvalidNameError(f"invalid batch key {key!r}: expected '<collection>-<number>'")
    return match["collection"], int(match["seq"])


def resolve_home(home: str | os.PathLike[str] | None = None) -> Path:
    """The data directory: ``home`` if given, else ``$PIXEL_DETECTIVE_HOME``, else ``./.pixel_detective``."""
    chosen = home or os.environ.get(HOME_ENV) or DEFAULT_HOME
    return Path(chosen).expanduser().resolve()


@dataclass(frozen=True)
class DataLayout:
    """Paths inside one data directory; every path derived from a name is validated first."""

    home: Path

    def tag_as_cache(self) -> None:
        """Create the data directory with a ``CACHEDIR.TAG``, so no scan (ours included) reads it as photos."""
        tag = self.home / CACHE_TAG
        if not tag.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            tag.write_bytes(CACHE_TAG_SIGNATURE + b"\n# Pixel Detective data directory: never scanned for images.\n")

    @property
    def catalog_db(self) -> Path:
        return self.home / "catalog.sqlite"

    @property
    def features_db(self) -> Path:
        return self.home / "features.sqlite"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def numba_cache(self) -> Path:
        return self.home / "numba_cache"

    def thumbnail(self, content_hash: str, size: int, fmt: str) -> Path:
        ext = "jpg" if fmt == "jpeg" else fmt
        return self.home / "thumbnails" / str(size) / content_hash[:2] / f"{content_hash}.{ext}"

    def preview(self, content_hash: str, shorter_side: int) -> Path:
        """The model-input preview of a content (JPEG): what the model steps decode instead of the original."""
        return self.home / "previews" / str(shorter_side) / content_hash[:2] / f"{content_hash}.jpg"

    def batch_dir(self, key: str) -> Path:
        parse_batch_key(key)
        return self.home / "batches" / key

    def batch_artifact(self, key: str, name: str) -> Path:
        return self.batch_dir(key) / f"{name}.parquet"

    def collection_dir(self, collection: str) -> Path:
        return self.home / "collections" / validate_collection(collection)

    def index_dir(self, collection: str) -> Path:
        return self.home / "index" / validate_collection(collection)
