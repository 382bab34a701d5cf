"""Image headers and blank placeholder images (legacy captures do not store the image size)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Tuple

from occprep.errors import OccprepError
from occprep.fileio import atomic_write


def image_size(path: Path) -> Tuple[int, int]:
    """(width, height) of an image, read from its header only."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.size
    except FileNotFoundError:
        raise OccprepError(f"{path}: image not found; legacy captures do not store the image size, "
                           "so the images must be present beside the Dataset folder") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise OccprepError(f"{path}: cannot read the image header ({exc})") from None


def blank_png(width: int, height: int) -> bytes:
    """A black 8-bit greyscale PNG of `width` × `height` pixels."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = b"".join(b"\x00" + bytes(width) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def write_blank_png(path: Path, width: int, height: int) -> None:
    """Write `blank_png(width, height)` to `path`, atomically."""
    with atomic_write(path) as handle:
        handle.write(blank_png(width, height))
