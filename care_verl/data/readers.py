"""Iterate rows of a dataset source: local parquet / arrow / json / jsonl files or directories,
or a Hugging Face Hub dataset id (``datasets`` is imported only in that case).

Each row comes with a `RowRef` (file and 0-based row number within that file) so that any
problem can be reported precisely.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from care_verl.data.report import RowRef

__all__ = ["iter_rows", "SUPPORTED_SUFFIXES", "is_hub_id", "READ_ERROR_KEY"]

SUPPORTED_SUFFIXES = (".parquet", ".arrow", ".json", ".jsonl")
# A row that could not even be read carries this key with the reason.
READ_ERROR_KEY = "__read_error__"


def is_hub_id(source: str) -> bool:
    """True for strings like "owner/name" that are not an existing local path."""
    parts = source.split("/")
    return not Path(source).exists() and len(parts) == 2 and all(parts) and not source.startswith(".")


def _files_in(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in SUPPORTED_SUFFIXES and p.is_file())
        if not files:  # e.g. a `save_to_disk` folder with one subfolder per split
            files = sorted(p for p in path.rglob("*") if p.suffix in SUPPORTED_SUFFIXES and p.is_file())
        if files:
            return files
        raise FileNotFoundError(f"no {'/'.join(SUPPORTED_SUFFIXES)} files in {path}")
    raise FileNotFoundError(f"no such file or directory: {path}")


def _iter_parquet(path: Path) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    reader = pq.ParquetFile(path)
    for batch in reader.iter_batches(batch_size=256):
        yield from batch.to_pylist()


def _iter_arrow(path: Path) -> Iterator[dict[str, Any]]:
    import pyarrow as pa

    with pa.memory_map(str(path)) as source:
        try:
            reader = pa.ipc.open_stream(source)  # what datasets' save_to_disk writes
            batches = iter(reader)
        except pa.ArrowInvalid:
            source.seek(0)
            file_reader = pa.ipc.open_file(source)
            batches = (file_reader.get_batch(i) for i in range(file_reader.num_record_batches))
        for batch in batches:
            yield from batch.to_pylist()


def _iter_json(path: Path) -> Iterator[dict[str, Any]]:
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    # Keep row numbering intact; the builder reports this row as bad.
                    yield {READ_ERROR_KEY: f"invalid JSON line: {exc}"}
        return
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict):  # {"data": [...]} or a single record
        lists = [v for v in data.values() if isinstance(v, list)]
        data = lists[0] if len(lists) == 1 else [data]
    yield from data


def _without_image_decoding(dataset: Any) -> Any:
    """Keep images as their original encoded bytes (decoding to PIL would force a PNG re-encode)."""
    import datasets

    features = getattr(dataset, "features", None)
    if not features:
        return dataset
    for name, feature in features.items():
        inner = getattr(feature, "feature", None)
        if isinstance(feature, datasets.Image):
            dataset = dataset.cast_column(name, datasets.Image(decode=False))
        elif isinstance(inner, datasets.Image):
            dataset = dataset.cast_column(name, type(feature)(datasets.Image(decode=False)))
    return dataset


def _iter_hub(source_name: str, hub_id: str, split: str, limit: int | None) -> Iterator[tuple[RowRef, dict[str, Any]]]:
    import datasets  # heavy and network-facing: imported only for hub ids

    dataset = _without_image_decoding(datasets.load_dataset(hub_id, split=split))
    label = f"{hub_id}[{split}]"
    for i, row in enumerate(dataset):
        if limit is not None and i >= limit:
            return
        yield RowRef(source_name, label, i), row


def iter_rows(
    source_name: str, source: str, split: str = "train", limit: int | None = None
) -> Iterator[tuple[RowRef, dict[str, Any]]]:
    """Yield ``(ref, row)`` for every row of `source` (at most `limit` in total)."""
    if is_hub_id(source):
        yield from _iter_hub(source_name, source, split, limit)
        return
    count = 0
    for path in _files_in(Path(source)):
        reader = {".parquet": _iter_parquet, ".arrow": _iter_arrow}.get(path.suffix, _iter_json)
        for i, row in enumerate(reader(path)):
            if limit is not None and count >= limit:
                return
            yield RowRef(source_name, str(path), i), row
            count += 1
