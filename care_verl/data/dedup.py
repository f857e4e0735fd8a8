"""Exact and near-duplicate detection over (question text, images).

Two rows are duplicates only if their normalised question texts are identical (ChartQA asks
many different questions about one chart, and those must all stay). Among rows with the same
question text:

* exact: every image decodes to identical pixels (so a lossless re-encode is still exact);
* near: same number of images and each image's 64-bit difference hash is within
  ``near_threshold`` bits of the other's (a JPEG re-encode, resize or slight crop).

The first occurrence is kept. Candidates are bucketed by question text, so cost stays linear
in practice.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from care_verl.data.images import LoadedImage, hamming
from care_verl.data.report import RowRef

__all__ = ["Deduplicator", "DuplicateMatch", "normalize_question"]

_PLACEHOLDER = re.compile(r"<image>")
_WS = re.compile(r"\s+")
DEFAULT_NEAR_THRESHOLD = 6


def normalize_question(text: str) -> str:
    """Question text for duplicate keys: NFKC, no image placeholders, lower case, single spaces."""
    text = _PLACEHOLDER.sub(" ", unicodedata.normalize("NFKC", text))
    return _WS.sub(" ", text).strip().lower()


@dataclass(frozen=True)
class DuplicateMatch:
    """The kept row a new row duplicates, how, and the image-hash distance."""

    kind: str
    first: RowRef
    first_answer: str
    distance: int


@dataclass(frozen=True)
class _Seen:
    ref: RowRef
    answer: str
    sha: tuple[str, ...]
    dhash: tuple[int, ...]


class Deduplicator:
    """Remembers kept rows and classifies new ones as exact / near duplicates."""

    def __init__(self, near_threshold: int = DEFAULT_NEAR_THRESHOLD, near: bool = True) -> None:
        self.near_threshold = near_threshold
        self.near = near
        self._by_question: dict[str, list[_Seen]] = defaultdict(list)

    def check_and_add(
        self, ref: RowRef, question: str, images: Sequence[LoadedImage], answer: str
    ) -> DuplicateMatch | None:
        """Return the match if the row duplicates a kept one; otherwise remember it, return None."""
        key = normalize_question(question)
        sha = tuple(image.sha256 for image in images)
        dhash = tuple(image.dhash for image in images)
        bucket = self._by_question[key]
        for seen in bucket:
            if seen.sha == sha:
                return DuplicateMatch("exact", seen.ref, seen.answer, 0)
        if self.near:
            for seen in bucket:
                if len(seen.dhash) != len(dhash):
                    continue
                distance = max((hamming(a, b) for a, b in zip(seen.dhash, dhash)), default=0)
                if distance <= self.near_threshold:
                    return DuplicateMatch("near", seen.ref, seen.answer, distance)
        bucket.append(_Seen(ref, answer, sha, dhash))
        return None
