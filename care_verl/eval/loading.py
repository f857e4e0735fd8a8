"""Load a benchmark's rows (Hub dataset or local files) into validated `EvalItem`s.

A source is a Hub dataset id (``datasets`` is imported only then, with the benchmark's config
and split) or a local ``.parquet`` / ``.arrow`` / ``.json`` / ``.jsonl`` file or folder, read by
`care_verl.data.readers.iter_rows`. Relative image paths are resolved against the data file's
folder and any extra image roots (folders or ``.zip`` files).

Every problem names the file and row: a bad row raises `EvalDataError` (or, with
``on_bad_row="skip"``, is counted and logged), and a duplicate id is always an error, because
per-item outputs and re-scoring are keyed by id.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from care_verl.data.images import ImageError, ImageResolver, load_image
from care_verl.data.readers import READ_ERROR_KEY, SUPPORTED_SUFFIXES, is_hub_id, iter_rows
from care_verl.data.report import BadRow, RowRef
from care_verl.eval.benchmarks import BenchmarkSpec
from care_verl.eval.items import IMAGE_PLACEHOLDER, EvalItem

__all__ = ["EvalDataError", "LoadResult", "load_items", "is_local_source"]

logger = logging.getLogger(__name__)


class EvalDataError(ValueError):
    """Benchmark data that cannot be evaluated; the message names the file and row."""


@dataclass
class LoadResult:
    """Items of one benchmark and the rows that were skipped (``on_bad_row="skip"``)."""

    items: list[EvalItem] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def is_local_source(source: str) -> bool:
    """True unless `source` can only be a Hub id ("owner/name", no file suffix, not a path)."""
    if Path(source).exists() or source.startswith(("/", ".", "~")) or Path(source).suffix in SUPPORTED_SUFFIXES:
        return True
    return not is_hub_id(source)


def _keep_encoded_images(dataset: Any) -> Any:
    """Cast Image columns to ``decode=False``: we validate and re-read the original bytes."""
    import datasets

    for name, feature in (getattr(dataset, "features", None) or {}).items():
        if isinstance(feature, datasets.Image):
            dataset = dataset.cast_column(name, datasets.Image(decode=False))
    return dataset


def _iter_hub(spec: BenchmarkSpec, hub_id: str, split: str, limit: int | None) -> Iterator[tuple[RowRef, dict]]:
    import datasets  # heavy and network-facing: imported only for hub ids

    dataset = _keep_encoded_images(datasets.load_dataset(hub_id, spec.hub_config, split=split))
    label = f"{hub_id}[{spec.hub_config + '/' if spec.hub_config else ''}{split}]"
    for i, row in enumerate(dataset):
        if limit is not None and i >= limit:
            return
        yield RowRef(spec.name, label, i), row


def _iter_source(spec: BenchmarkSpec, source: str, split: str, limit: int | None) -> Iterator[tuple[RowRef, dict]]:
    if not is_local_source(source):
        yield from _iter_hub(spec, source, split, limit)
        return
    if not Path(source).exists():
        raise FileNotFoundError(f"{spec.name}: data file not found: {source}")
    yield from iter_rows(spec.name, source, split=split, limit=limit)


class _Resolvers:
    """One image resolver per data file: its folder first, then the extra roots."""

    def __init__(self, extra_roots: Sequence[str]) -> None:
        self._extra = list(extra_roots)
        self._by_file: dict[str, ImageResolver] = {}

    def for_file(self, file: str) -> ImageResolver:
        if file not in self._by_file:
            path = Path(file)
            roots = ([str(path.parent)] if path.exists() else []) + self._extra
            self._by_file[file] = ImageResolver(roots)
        return self._by_file[file]

    def close(self) -> None:
        for resolver in self._by_file.values():
            resolver.close()


def _make_item(spec: BenchmarkSpec, ref: RowRef, row: dict, resolver: ImageResolver) -> EvalItem:
    if READ_ERROR_KEY in row:
        raise BadRow(row[READ_ERROR_KEY])
    parsed = spec.parse_row(row)
    placeholders = parsed.question.count(IMAGE_PLACEHOLDER)
    if placeholders != len(parsed.raw_images):
        raise BadRow(f"{placeholders} {IMAGE_PLACEHOLDER} placeholders for {len(parsed.raw_images)} images")
    try:
        images = tuple(load_image(raw, resolver).data for raw in parsed.raw_images)
    except ImageError as exc:
        raise BadRow(str(exc)) from exc
    return EvalItem(benchmark=spec.name, source=f"{ref.file}: row {ref.row}", images=images, spec=parsed)


def load_items(
    spec: BenchmarkSpec,
    source: str | None = None,
    split: str | None = None,
    limit: int | None = None,
    image_roots: Sequence[str] = (),
    on_bad_row: str = "fail",
) -> LoadResult:
    """Load up to `limit` items of `spec` from `source` (default: the spec's Hub dataset).

    Raises:
        FileNotFoundError: a local source does not exist (the message names it).
        EvalDataError: a bad row under ``on_bad_row="fail"``, or a duplicate id.
    """
    if on_bad_row not in ("fail", "skip"):
        raise ValueError(f"on_bad_row must be 'fail' or 'skip', got {on_bad_row!r}")
    result = LoadResult()
    seen: dict[str, str] = {}
    resolvers = _Resolvers(image_roots)
    try:
        for ref, row in _iter_source(spec, source or spec.hub_id, split or spec.split, limit):
            where = f"{ref.file}: row {ref.row}"
            try:
                item = _make_item(spec, ref, row, resolvers.for_file(ref.file))
            except BadRow as exc:
                if on_bad_row == "fail":
                    message = f"{spec.name}: bad row at {where}: {exc} (on_bad_row=skip drops such rows)"
                    raise EvalDataError(message) from exc
                logger.warning("%s: skipping bad row at %s: %s", spec.name, where, exc)
                result.skipped.append(f"{where}: {exc}")
                continue
            if item.id in seen:
                raise EvalDataError(f"{spec.name}: duplicate id {item.id!r} at {where} (first seen at {seen[item.id]})")
            seen[item.id] = where
            result.items.append(item)
    finally:
        resolvers.close()
    return result
