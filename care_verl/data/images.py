"""Image loading, validation, encoding and hashing for the dataset builders.

Images arrive as PIL images (``datasets`` with decoding on), ``{"bytes", "path"}`` dicts
(parquet written by ``datasets``), raw bytes, or paths relative to an image root that may be a
directory or a zip archive (ViRL39K ships ``images.zip``). Every image is fully decoded once,
so a truncated or corrupt file is caught at build time, not in the middle of training.
PNG and JPEG bytes are kept as they are; other formats are re-encoded as PNG.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

__all__ = ["ImageError", "ImageResolver", "LoadedImage", "load_image", "cap_pixels", "hamming", "PAPER_MAX_PIXELS"]

# Pixel cap of the paper-scale RL data: 1280 visual tokens of 28x28 pixels for Qwen2.5-VL
# (1003520 px), so an image plus its question fits data.max_prompt_length=2048. Without a cap
# qwen_vl_utils allows ~16K visual tokens per image, and verl silently drops every prompt over
# the limit.
PAPER_MAX_PIXELS = 1280 * 28 * 28

# Decompression-bomb guard: larger images are rejected as bad rows rather than eating memory.
_MAX_PIXELS = 64_000_000


class ImageError(ValueError):
    """An image is missing or unreadable; `kind` is "missing image" or "unreadable image"."""

    def __init__(self, message: str, kind: str = "unreadable image") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class LoadedImage:
    """A validated image.

    Attributes:
        data: PNG or JPEG bytes to store in the parquet.
        sha256: Hash of the decoded RGB pixels (same picture, any encoding -> same hash).
        dhash: 64-bit difference hash of a 9x8 grayscale thumbnail, for near-duplicates.
        size: (width, height).
    """

    data: bytes
    sha256: str
    dhash: int
    size: tuple[int, int]


class ImageResolver:
    """Finds images given as relative paths under a list of roots (directories or .zip files)."""

    def __init__(self, roots: Sequence[str | os.PathLike[str]] = ()) -> None:
        self._dirs: list[Path] = []
        self._zips: list[zipfile.ZipFile] = []
        for root in roots:
            path = Path(root)
            if path.is_file() and zipfile.is_zipfile(path):
                self._zips.append(zipfile.ZipFile(path))
            else:
                self._dirs.append(path)

    def read(self, rel_path: str) -> bytes:
        """Bytes of `rel_path` (absolute paths are read directly); raise ImageError if absent."""
        path = Path(rel_path)
        if path.is_absolute():
            if path.is_file():
                return path.read_bytes()
            raise ImageError(f"image file not found: {rel_path}", "missing image")
        for root in self._dirs:
            candidate = root / path
            if candidate.is_file():
                return candidate.read_bytes()
        stripped = rel_path[2:] if rel_path.startswith("./") else rel_path
        for archive in self._zips:
            # Archives may or may not include the top-level folder named in the path.
            for name in (stripped, stripped.split("/", 1)[-1]):
                try:
                    return archive.read(name)
                except KeyError:
                    continue
        raise ImageError(f"image not found under {self.describe()}: {rel_path}", "missing image")

    def describe(self) -> str:
        """Human-readable list of roots, for error messages."""
        names = [str(d) for d in self._dirs] + [str(z.filename) for z in self._zips]
        return ", ".join(names) or "(no image roots)"

    def close(self) -> None:
        """Close any open archives."""
        for archive in self._zips:
            archive.close()


def _raw_bytes(image: Any, resolver: ImageResolver | None) -> bytes | Image.Image:
    if image is None:
        raise ImageError("image is missing (null)", "missing image")
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image)
    if isinstance(image, dict):
        if image.get("bytes"):
            return bytes(image["bytes"])
        if image.get("path"):
            return _raw_bytes(str(image["path"]), resolver)
        raise ImageError("image dict has neither bytes nor path", "missing image")
    if isinstance(image, (str, os.PathLike)):
        if resolver is None:
            resolver = ImageResolver()
        return resolver.read(os.fspath(image))
    raise ImageError(f"unsupported image value of type {type(image).__name__}")


def _dhash(image: Image.Image) -> int:
    thumb = image.convert("L").resize((9, 8), Image.Resampling.BILINEAR)
    pixels = thumb.tobytes()  # mode "L": one byte per pixel
    bits = 0
    for row in range(8):
        for col in range(8):
            left, right = pixels[row * 9 + col], pixels[row * 9 + col + 1]
            bits = (bits << 1) | int(left > right)
    return bits


def load_image(image: Any, resolver: ImageResolver | None = None) -> LoadedImage:
    """Decode and validate `image`; raise ImageError if it is missing or unreadable."""
    raw = _raw_bytes(image, resolver)
    try:
        if isinstance(raw, Image.Image):
            decoded = raw
            decoded.load()
            fmt = None
        else:
            decoded = Image.open(io.BytesIO(raw))
            fmt = decoded.format
            if decoded.width * decoded.height > _MAX_PIXELS:
                raise ImageError(f"image too large ({decoded.width}x{decoded.height})")
            decoded.load()  # full decode: catches truncated files
    except ImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for corrupt data
        raise ImageError(f"unreadable image: {type(exc).__name__}: {exc}") from exc
    rgb = decoded.convert("RGB")
    if isinstance(raw, bytes) and fmt in ("PNG", "JPEG"):
        data = raw
    else:
        buffer = io.BytesIO()
        rgb.save(buffer, format="PNG")
        data = buffer.getvalue()
    digest = hashlib.sha256(f"{rgb.width}x{rgb.height}".encode() + rgb.tobytes()).hexdigest()
    return LoadedImage(data=data, sha256=digest, dhash=_dhash(rgb), size=(rgb.width, rgb.height))


def cap_pixels(image: LoadedImage, max_pixels: int | None) -> tuple[LoadedImage, bool]:
    """``image`` scaled down (aspect kept) to at most ``max_pixels`` pixels; (image, was_resized).

    The hashes stay those of the original picture, so de-duplication is unaffected. A JPEG stays
    JPEG (quality 95); anything else is stored as PNG.
    """
    width, height = image.size
    if not max_pixels or width * height <= max_pixels:
        return image, False
    scale = (max_pixels / (width * height)) ** 0.5
    size = (max(1, int(width * scale)), max(1, int(height * scale)))
    with Image.open(io.BytesIO(image.data)) as decoded:
        fmt = "JPEG" if decoded.format == "JPEG" else "PNG"
        resized = decoded.convert("RGB").resize(size, Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    resized.save(buffer, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return LoadedImage(buffer.getvalue(), image.sha256, image.dhash, size), True


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two hashes."""
    return (a ^ b).bit_count()
