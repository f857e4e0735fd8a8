"""Where the actor, reference and embedding forwards really ran (``care_verl.launch.gpu_check``).

Imported in every process that imports verl when ``VERL_USE_EXTERNAL_MODULES`` names it (verl 0.9.1
``verl/__init__.py`` imports those modules at its own import) and ``CARE_VERL_GPU_PROBE`` names a
directory. It wraps ``forward_step`` of the FSDP language-model engines care_verl registers and,
for the first forwards of each kind in each process, appends one JSON line to
``$CARE_VERL_GPU_PROBE/<pid>.jsonl``: the engine (actor: ``forward_only`` false; reference: true),
the kind of forward (train, log-prob, log-prob with CARE's reasoning embeddings), the device and
dtype of the module's parameters and of the LM head's input (the last hidden state, from which the
embeddings are pooled). Without the variable importing this module changes nothing.
"""

from __future__ import annotations

import functools
import json
import os

ENV = "CARE_VERL_GPU_PROBE"
RECORDS_PER_KIND = 2
_COUNTS: dict[tuple, int] = {}


def _write(record: dict) -> None:
    path = os.path.join(os.environ[ENV], f"{os.getpid()}.jsonl")
    with open(path, "a") as fp:
        fp.write(json.dumps(record) + "\n")


def probe_forward_step(original):
    """``forward_step`` that records the devices of its first calls of each kind, then calls ``original``."""

    @functools.wraps(original)
    def forward_step(self, micro_batch, loss_function, forward_only):
        from verl.utils import tensordict_utils as tu

        from care_verl.adapter.step.embeddings import EMBED_FLAG

        embed = bool(forward_only and tu.get_non_tensor_data(data=micro_batch, key=EMBED_FLAG, default=False))
        engine_forward_only = bool(getattr(getattr(self, "engine_config", None), "forward_only", False))
        kind = "train" if not forward_only else ("logprob+embeddings" if embed else "logprob")
        key = (engine_forward_only, kind)
        if _COUNTS.get(key, 0) >= RECORDS_PER_KIND:
            return original(self, micro_batch, loss_function, forward_only)
        _COUNTS[key] = _COUNTS.get(key, 0) + 1
        seen: dict[str, str] = {}

        def hook(_module, args):
            if args and hasattr(args[0], "device"):
                seen["hidden_device"] = str(args[0].device)
                seen["hidden_dtype"] = str(args[0].dtype).replace("torch.", "")

        handle = None
        try:
            handle = self.module.get_output_embeddings().register_forward_pre_hook(hook)
        except Exception as exc:  # noqa: BLE001 - the probe must never break a run
            seen["hook_error"] = repr(exc)
        try:
            result = original(self, micro_batch, loss_function, forward_only)
        finally:
            if handle is not None:
                handle.remove()
        param = next(self.module.parameters(), None)
        _write({
            "pid": os.getpid(),
            "engine": type(self).__name__,
            "role": "reference" if engine_forward_only else "actor",
            "kind": kind,
            "param_device": str(param.device) if param is not None else None,
            "param_dtype": str(param.dtype).replace("torch.", "") if param is not None else None,
            "input_device": str(micro_batch["input_ids"].device) if "input_ids" in micro_batch.keys() else None,
            **seen,
        })
        return result

    forward_step.__care_verl_probe__ = True
    return forward_step


def install() -> int:
    """Wrap every registered FSDP language-model engine once; returns how many classes were wrapped."""
    import care_verl.adapter.entry.register  # noqa: F401  (registers the embedding engines first)
    from verl.workers.engine.base import EngineRegistry

    wrapped = 0
    for backend in ("fsdp", "fsdp2"):
        for cls in set(EngineRegistry._engines.get("language_model", {}).get(backend, {}).values()):
            if not getattr(cls.forward_step, "__care_verl_probe__", False):
                cls.forward_step = probe_forward_step(cls.forward_step)
                wrapped += 1
    return wrapped


if os.environ.get(ENV):
    os.makedirs(os.environ[ENV], exist_ok=True)
    install()
