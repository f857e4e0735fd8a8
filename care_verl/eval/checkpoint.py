"""Accept a verl checkpoint as ``model=``: convert its FSDP shards to a Hugging Face folder, once.

verl's trainer writes ``<run>/checkpoints/global_step_N/actor/`` with ``fsdp_config.json``,
one ``model_world_size_W_rank_R.pt`` per rank (DTensor shards) and ``huggingface/`` (config,
tokenizer, processor; no weights). verl 0.9.1's own merger (``verl.model_merger``, the code
behind ``python -m verl.model_merger merge --backend fsdp``) turns that into a model folder;
it runs on CPU and is used here unchanged. Note it writes bfloat16 weights.

Conversions are cached under ``$CARE_VERL_CACHE/eval_models`` (or ``convert_dir``), keyed by
the shard files' paths, sizes and modification times, and written atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from care_verl.data.readers import is_hub_id

__all__ = ["ResolvedModel", "resolve_model", "find_actor_dir", "is_hf_model_dir", "convert_checkpoint", "MARKER"]

logger = logging.getLogger(__name__)

MARKER = "care_verl_converted.json"
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


@dataclass(frozen=True)
class ResolvedModel:
    """What to load (a model folder or hub id) and, if converted, the checkpoint it came from."""

    path: str
    checkpoint: str | None = None


def is_hf_model_dir(path: Path) -> bool:
    """A folder with ``config.json`` and weights."""
    return (path / "config.json").is_file() and any((path / name).is_file() for name in _WEIGHT_FILES)


def find_actor_dir(path: Path) -> Path | None:
    """The ``actor`` folder of a verl checkpoint given as the actor folder, a ``global_step_N``
    folder, or a ``checkpoints`` folder (its ``latest_checkpointed_iteration.txt`` step)."""
    if (path / "fsdp_config.json").is_file():
        return path
    if (path / "actor" / "fsdp_config.json").is_file():
        return path / "actor"
    latest = path / "latest_checkpointed_iteration.txt"
    if latest.is_file():
        step = latest.read_text().strip()
        actor = path / f"global_step_{step}" / "actor"
        if (actor / "fsdp_config.json").is_file():
            return actor
        raise FileNotFoundError(f"{latest} names step {step} but {actor / 'fsdp_config.json'} does not exist")
    return None


def _shard_files(actor: Path) -> list[Path]:
    """Check the checkpoint is complete; return the files that define it."""
    config_path = actor / "fsdp_config.json"
    try:
        world_size = int(json.loads(config_path.read_text())["world_size"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{config_path}: cannot read world_size ({exc})") from exc
    shards = [actor / f"model_world_size_{world_size}_rank_{rank}.pt" for rank in range(world_size)]
    for shard in shards:
        if not shard.is_file():
            raise FileNotFoundError(f"verl checkpoint is incomplete: missing model shard {shard}")
    hf_config = actor / "huggingface" / "config.json"
    if not hf_config.is_file():
        raise FileNotFoundError(f"verl checkpoint is incomplete: missing {hf_config}")
    return [config_path, *shards, *sorted(p for p in (actor / "huggingface").iterdir() if p.is_file())]


def _cache_key(actor: Path, files: list[Path]) -> str:
    digest = hashlib.sha256(str(actor.resolve()).encode())
    for file in files:
        stat = file.stat()
        digest.update(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def convert_checkpoint(actor: Path, out_root: str | os.PathLike[str] | None = None) -> Path:
    """Convert a verl FSDP actor checkpoint to a Hugging Face folder (cached); return its path."""
    from care_verl.models.tiny import cache_root

    actor = Path(actor)
    files = _shard_files(actor)
    root = Path(out_root) if out_root else cache_root() / "eval_models"
    step = actor.parent.name if actor.name == "actor" else actor.name
    target = root / f"{step}-{_cache_key(actor, files)}"
    if (target / MARKER).is_file():
        logger.info("using cached conversion %s of %s", target, actor)
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root))
    try:
        logger.info("converting verl checkpoint %s -> %s", actor, target)
        from care_verl.adapter.tools.checkpoint_merge import merge_fsdp_checkpoint

        merge_fsdp_checkpoint(actor, tmp)
        (tmp / MARKER).write_text(json.dumps({"source": str(actor.resolve()), "merger": "verl.model_merger fsdp"}))
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / MARKER).is_file():  # not a concurrent conversion that won the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_model(model: str, convert_dir: str | None = None) -> ResolvedModel:
    """Resolve ``model=``: a Hugging Face folder or hub id as is, a verl checkpoint converted.

    Raises:
        FileNotFoundError: the path does not exist (and is not a hub id), or a checkpoint is
            incomplete (the message names the missing file).
        ValueError: the folder is neither a model folder nor a verl checkpoint.
    """
    path = Path(model)
    if not path.exists():
        if is_hub_id(model):
            return ResolvedModel(model)
        raise FileNotFoundError(f"model path not found: {model}")
    if path.is_dir() and is_hf_model_dir(path):
        return ResolvedModel(str(path))
    actor = find_actor_dir(path) if path.is_dir() else None
    if actor is None:
        raise ValueError(
            f"model={model} is neither a Hugging Face model folder (config.json + weights) nor a verl "
            "checkpoint (global_step_N/actor with fsdp_config.json, a global_step_N folder, or a "
            "checkpoints folder with latest_checkpointed_iteration.txt)"
        )
    return ResolvedModel(str(convert_checkpoint(actor, convert_dir)), checkpoint=str(actor))
