"""What every decoder returns or raises."""

from __future__ import annotations

from dataclasses import dataclass, field


class ImageError(Exception):
    """A file that cannot be used as an image; the message is the reason shown to people."""


@dataclass
class ImageInfo:
    format: str
    width: int
    height: int
    frames: int = 1
    exif: dict[str, object] = field(default_factory=dict)
