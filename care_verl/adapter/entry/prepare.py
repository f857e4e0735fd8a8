"""Resolve the local-artefact references a recipe may use, before verl sees the config.

- ``actor_rollout_ref.model.path: tiny:KIND[/SIZE[/SEED]]`` builds (or reuses) a tiny random
  model with :func:`care_verl.models.build_tiny_model` and substitutes its directory.
- ``data.train_files`` / ``data.val_files`` entries ``synthetic://TASK[+TASK]?difficulty=D&n=N&split=S&seed=K``
  generate a parquet of the synthetic visual tasks (cached by content key) and substitute its path.
- ``run.dir`` becomes absolute (Ray workers may not share the driver's working directory).

Everything else passes through unchanged, so hub names and real paths keep working.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from omegaconf import DictConfig, ListConfig, open_dict

TINY_PREFIX = "tiny:"
SYNTHETIC_PREFIX = "synthetic://"


def resolve_tiny_model(ref: str) -> str:
    """``tiny:qwen2_5_vl/small/0`` -> a built model directory."""
    from care_verl.models import build_tiny_model

    parts = ref[len(TINY_PREFIX) :].strip("/").split("/")
    kind = parts[0] or "qwen2_5_vl"
    size = parts[1] if len(parts) > 1 else "small"
    seed = int(parts[2]) if len(parts) > 2 else 0
    return build_tiny_model(kind, size=size, seed=seed)


def parse_synthetic(ref: str) -> dict:
    """Parse a ``synthetic://`` reference into build arguments (raises ValueError naming the bad part)."""
    url = urlparse(ref)
    tasks = tuple(t for t in (url.netloc + url.path).strip("/").split("+") if t)
    query = {k: v[-1] for k, v in parse_qs(url.query).items()}
    unknown = set(query) - {"difficulty", "n", "split", "seed"}
    if unknown:
        raise ValueError(f"{ref}: unknown parameter(s) {sorted(unknown)}")
    try:
        spec = {
            "tasks": tasks,
            "difficulty": int(query.get("difficulty", 1)),
            "n": int(query.get("n", 64)),
            "split": query.get("split", "train"),
            "seed": int(query.get("seed", 0)),
        }
    except ValueError as exc:
        raise ValueError(f"{ref}: {exc}") from None
    if not tasks:
        raise ValueError(f"{ref}: names no task")
    if spec["n"] < 1:
        raise ValueError(f"{ref}: n must be >= 1")
    return spec


def resolve_synthetic(ref: str, cache_dir: Path) -> str:
    """Generate the parquet a ``synthetic://`` reference describes (once) and return its path."""
    from care_verl.data import synthetic

    spec = parse_synthetic(ref)
    key = hashlib.sha1(repr(sorted(spec.items())).encode()).hexdigest()[:12]
    path = cache_dir / f"synthetic-{'+'.join(spec['tasks'])}-{spec['split']}-{key}.parquet"
    if not path.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        rows = synthetic.build_rows(spec["tasks"], spec["difficulty"], spec["n"], spec["seed"], spec["split"])
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        synthetic.write_parquet(rows, str(tmp))
        os.replace(tmp, path)
    return str(path)


def _resolve_files(value, cache_dir: Path):
    if isinstance(value, str):
        return resolve_synthetic(value, cache_dir) if value.startswith(SYNTHETIC_PREFIX) else value
    if isinstance(value, (list, ListConfig)):
        return [_resolve_files(v, cache_dir) for v in value]
    return value


def prepare_config(config: DictConfig) -> DictConfig:
    """Resolve tiny models, synthetic data and the run directory in place; returns ``config``."""
    from care_verl.models.tiny import cache_root

    with open_dict(config):
        model_path = config.actor_rollout_ref.model.path
        if isinstance(model_path, str) and model_path.startswith(TINY_PREFIX):
            config.actor_rollout_ref.model.path = resolve_tiny_model(model_path)
        data_cache = cache_root() / "data"
        for key in ("train_files", "val_files"):
            config.data[key] = _resolve_files(config.data.get(key), data_cache)
        from care_verl.adapter.rollout.rollout_config import apply_rollout_settings, rollout_settings
        from care_verl.adapter.step.trainer_mode import CARE_TRAINER_MODE, WORKER_FIELDS_TRAINER_MODE

        if config.trainer.v1.trainer_mode == "sync":
            if config.algorithm.adv_estimator == "care":
                # CARE's steps live in care_verl's v1 trainer; the estimator name selects it.
                config.trainer.v1.trainer_mode = CARE_TRAINER_MODE
            elif config.trainer.get("use_v1", False) and rollout_settings(config).select_worker_fields:
                # other estimators: verl's sync trainer with slimmer worker calls (adapter/step/worker_fields.py)
                config.trainer.v1.trainer_mode = WORKER_FIELDS_TRAINER_MODE

        apply_rollout_settings(config)  # care.rollout.*: the cached multimodal agent loop by default
        if "run" in config and config.run.get("dir"):
            config.run.dir = str(Path(config.run.dir).expanduser().resolve())
    return config
