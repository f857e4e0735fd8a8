"""Per-row dumps of the CARE step for end-to-end tests ($CARE_VERL_ROW_DUMP, off by default).

The tests check values that metrics cannot show: each row's reasoning embedding against a
recomputation outside verl, RGR's rows read back after the step, per-row verifier scores, and
rollout vs actor log-probs. When the variable names a directory, the trainer writes
``<dir>/step<N>_<stage>.pt`` (a dict of per-row lists) at each stage; otherwise nothing happens.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

ENV = "CARE_VERL_ROW_DUMP"


def enabled() -> bool:
    return bool(os.environ.get(ENV))


def _rows(value) -> list:
    """A TQ field as one entry per row (jagged and padded tensors, non-tensor stacks)."""
    if isinstance(value, torch.Tensor):
        if getattr(value, "is_nested", False):
            return [t.clone() for t in value.unbind()]
        return [t.clone() for t in value]
    return value.tolist() if hasattr(value, "tolist") else list(value)


def dump_rows(step: int, stage: str, data, extra: dict) -> None:
    """Write ``data``'s fields (a TensorDict read from TransferQueue) and ``extra`` for ``step``."""
    path = Path(os.environ[ENV])
    path.mkdir(parents=True, exist_ok=True)
    out = {key: _rows(data[key]) for key in data.keys()}
    out.update(extra)
    torch.save(out, path / f"step{step}_{stage}.pt")
