"""Build verl parquet files from dataset sources: `build_rl` and `build_sft`.

Both stream rows (only duplicate keys stay in memory), validate every image by decoding it,
drop duplicates, and record bad rows with file and row number (skipped or fatal per
``on_bad_row``). Output is written to a temporary file and renamed, so a failed build never
leaves a partial parquet behind.
"""

from __future__ import annotations

import hashlib
import heapq
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from care_verl.data.dedup import DEFAULT_NEAR_THRESHOLD, Deduplicator
from care_verl.data.example import RLExample, SFTExample
from care_verl.data.images import ImageError, ImageResolver, LoadedImage, cap_pixels, load_image
from care_verl.data.prompt import DEFAULT_TEMPLATE, resolve_template
from care_verl.data.readers import READ_ERROR_KEY, is_hub_id, iter_rows
from care_verl.data.report import BadRow, BuildReport, OnBadRow, RowRef
from care_verl.data.schema import RL_SCHEMA, SFT_SCHEMA, rl_row, sft_row
from care_verl.data.sources.chartqa import chartqa_example
from care_verl.data.sources.geometry3k import geometry3k_example
from care_verl.data.sources.virl39k import virl39k_example
from care_verl.data.sources.vision_r1 import vision_r1_example

__all__ = ["SourceSpec", "BuildOptions", "build_rl", "build_sft", "RL_SOURCES", "SFT_SOURCES", "default_report_path"]

RL_SOURCES = ("chartqa", "geometry3k", "virl39k")
SFT_SOURCES = ("vision_r1_cold",)
_VIRL_PARQUET = "39Krelease.parquet"


@dataclass
class SourceSpec:
    """One input: a source type, a path or hub id, and where its image paths are resolved.

    ``image_roots`` may list directories and ``.zip`` files; by default the folder holding the
    source file (and an ``images.zip`` next to it) is used.
    """

    name: str
    location: str
    image_roots: list[str] = field(default_factory=list)


@dataclass
class BuildOptions:
    """Options shared by the RL and SFT builds (see the CLI help for each)."""

    split: str = "train"
    template: str = DEFAULT_TEMPLATE
    dedup: bool = True
    near_dup: bool = True
    near_threshold: int = DEFAULT_NEAR_THRESHOLD
    on_bad_row: OnBadRow = "skip"
    limit: int | None = None
    geometry3k_mode: str = "math"
    assistant_format: str = "keep"
    batch_rows: int = 256
    max_pixels: int | None = None
    val_out: str | None = None
    val_size: int = 0
    val_seed: int = 0


def _holdout_key(seed: int, ref: RowRef) -> int:
    """A row's deterministic random key: the ``val_size`` smallest keys form the validation split."""
    digest = hashlib.blake2b(f"{seed}|{ref.source}|{ref.file}|{ref.row}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def default_report_path(out: str | Path) -> Path:
    """``train.parquet`` -> ``train.report.json``."""
    out = Path(out)
    return out.with_name(out.stem + ".report.json")


def _hub_virl39k(hub_id: str) -> tuple[str, list[str]]:
    """Download ViRL39K's parquet and image archive (its hub layout defeats load_dataset)."""
    from huggingface_hub import hf_hub_download

    parquet = hf_hub_download(hub_id, _VIRL_PARQUET, repo_type="dataset")
    archive = hf_hub_download(hub_id, "images.zip", repo_type="dataset")
    return parquet, [archive]


def _resolved(spec: SourceSpec) -> tuple[str, ImageResolver]:
    location, roots = spec.location, list(spec.image_roots)
    if spec.name == "virl39k" and is_hub_id(location):
        location, hub_roots = _hub_virl39k(location)
        roots = roots or hub_roots
    path = Path(location)
    if not roots and not is_hub_id(location):
        base = path if path.is_dir() else path.parent
        roots = [str(base)] + [str(p) for p in sorted(base.glob("*.zip"))]
    return location, ImageResolver(roots)


def _load_images(raw_images: Sequence[Any], resolver: ImageResolver) -> list[LoadedImage]:
    loaded = []
    for i, raw in enumerate(raw_images):
        try:
            loaded.append(load_image(raw, resolver))
        except ImageError as exc:
            raise BadRow(f"{exc.kind}: image {i}: {exc}") from exc
    return loaded


def _examples(
    spec: SourceSpec, adapter: Callable[[dict[str, Any]], Any], options: BuildOptions, report: BuildReport
) -> Iterator[tuple[RowRef, Any, list[LoadedImage]]]:
    """Yield (ref, example, images) for the good rows of one source; record the bad ones."""
    location, resolver = _resolved(spec)
    try:
        for ref, row in iter_rows(spec.name, location, options.split, options.limit):
            report.read[spec.name] += 1
            try:
                if not isinstance(row, dict):
                    raise BadRow(f"unreadable row: not an object but {type(row).__name__}")
                if READ_ERROR_KEY in row:
                    raise BadRow(f"unreadable row: {row[READ_ERROR_KEY]}")
                example = adapter(row)
                images = _load_images(example.raw_images, resolver)
            except BadRow as exc:
                report.add_bad(ref, str(exc), options.on_bad_row)
                continue
            yield ref, example, images
    finally:
        resolver.close()


class _Writer:
    """Buffered parquet writer to a temporary file, renamed into place on success."""

    def __init__(self, out: Path, schema: pa.Schema, batch_rows: int) -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        self.out, self.tmp = out, out.with_name(f".{out.name}.tmp-{os.getpid()}")
        self.schema, self.batch_rows = schema, batch_rows
        self.writer = pq.ParquetWriter(self.tmp, schema)
        self.rows: list[dict[str, Any]] = []
        self.count = 0

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.count += 1
        if len(self.rows) >= self.batch_rows:
            self._flush()

    def _flush(self) -> None:
        if self.rows:
            self.writer.write_table(pa.Table.from_pylist(self.rows, schema=self.schema))
            self.rows = []

    def commit(self) -> None:
        self._flush()
        self.writer.close()
        os.replace(self.tmp, self.out)

    def abort(self) -> None:
        self.writer.close()
        self.tmp.unlink(missing_ok=True)


def _build(
    kind: str,
    sources: Sequence[SourceSpec],
    out: str | Path,
    options: BuildOptions,
    schema: pa.Schema,
    adapter_for: Callable[[str], Callable[[dict[str, Any]], Any]],
    dedup_text: Callable[[Any], str],
    answer_of: Callable[[Any], str],
    make_row: Callable[[Any, list[LoadedImage], RowRef, int, str], dict[str, Any]],
) -> BuildReport:
    report = BuildReport(output=str(out), kind=kind, max_pixels=options.max_pixels)
    dedup = Deduplicator(options.near_threshold, near=options.near_dup) if options.dedup else None
    writer = _Writer(Path(out), schema, options.batch_rows)
    # Validation hold-out: the val_size rows with the smallest random keys, drawn uniformly from the
    # de-duplicated rows of every source (a max-heap of size val_size; evicted rows go to training).
    held: list[tuple[int, int, RowRef, Any, list[LoadedImage]]] = []
    hold = options.val_size if options.val_out else 0
    seen = 0

    def emit(target: _Writer, ref: RowRef, example: Any, images: list[LoadedImage], split: str) -> None:
        target.add(make_row(example, images, ref, target.count, split))

    try:
        for spec in sources:
            report.read[spec.name] += 0
            report.written[spec.name] += 0
            for ref, example, images in _examples(spec, adapter_for(spec.name), options, report):
                if dedup is not None:
                    match = dedup.check_and_add(ref, dedup_text(example), images, answer_of(example))
                    if match is not None:
                        report.add_duplicate(
                            ref,
                            match.kind,
                            match.first,
                            {"hash_distance": match.distance, "answer_conflict": match.first_answer != answer_of(example)},
                        )
                        continue
                capped = [cap_pixels(image, options.max_pixels) for image in images]
                report.resized_images += sum(resized for _, resized in capped)
                images = [image for image, _ in capped]
                if hold:
                    seen += 1  # unique tie-break, so rows themselves are never compared
                    item = (-_holdout_key(options.val_seed, ref), seen, ref, example, images)
                    if len(held) < hold:
                        heapq.heappush(held, item)
                        continue
                    _, _, ref, example, images = heapq.heappushpop(held, item)  # the largest key leaves
                emit(writer, ref, example, images, options.split)
                report.written[ref.source] += 1
        if hold:
            val_writer = _Writer(Path(options.val_out), schema, options.batch_rows)
            try:
                for _, _, ref, example, images in sorted(held, reverse=True):
                    emit(val_writer, ref, example, images, "val")
                    report.val_written[ref.source] += 1
            except BaseException:
                val_writer.abort()
                raise
            val_writer.commit()
            report.val_output = str(options.val_out)
    except BaseException:
        writer.abort()
        raise
    writer.commit()
    return report


def build_rl(sources: Sequence[SourceSpec], out: str | Path, options: BuildOptions | None = None) -> BuildReport:
    """Build one verl RL parquet from ChartQA / Geometry3K / ViRL39K sources."""
    options = options or BuildOptions()
    resolve_template(options.template)  # fail fast on a bad template

    def adapter_for(name: str) -> Callable[[dict[str, Any]], RLExample]:
        if name == "chartqa":
            return chartqa_example
        if name == "geometry3k":
            return lambda row: geometry3k_example(row, options.geometry3k_mode)
        if name == "virl39k":
            return virl39k_example
        raise ValueError(f"unknown RL source {name!r}; expected one of {RL_SOURCES}")

    return _build(
        "rl",
        sources,
        out,
        options,
        RL_SCHEMA,
        adapter_for,
        dedup_text=lambda ex: ex.question,
        answer_of=lambda ex: ex.answer,
        make_row=lambda ex, images, ref, index, split: rl_row(ex, images, ref, index, split, options.template),
    )


def build_sft(sources: Sequence[SourceSpec], out: str | Path, options: BuildOptions | None = None) -> BuildReport:
    """Build one verl multi-turn SFT parquet from Vision-R1-cold sources."""
    options = options or BuildOptions()

    def adapter_for(name: str) -> Callable[[dict[str, Any]], SFTExample]:
        if name == "vision_r1_cold":
            return lambda row: vision_r1_example(row, options.assistant_format)
        raise ValueError(f"unknown SFT source {name!r}; expected one of {SFT_SOURCES}")

    def user_text(ex: SFTExample) -> str:
        return "\n".join(m["content"] for m in ex.messages if m["role"] == "user")

    def last_answer(ex: SFTExample) -> str:
        return next((m["content"] for m in reversed(ex.messages) if m["role"] == "assistant"), "")

    return _build(
        "sft",
        sources,
        out,
        options,
        SFT_SCHEMA,
        adapter_for,
        dedup_text=user_text,
        answer_of=last_answer,
        make_row=lambda ex, images, ref, index, split: sft_row(ex, images, ref, index, split),
    )
