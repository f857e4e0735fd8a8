"""verl 0.9.1's engine-based SFT trainer in one CPU process, with a hook at every checkpoint.

``fit_sft(config, on_save)`` runs ``verl.trainer.sft_trainer.SFTTrainer`` as a one-rank job
(FSDP2 over gloo through care_verl's platform plugin, sdpa attention). verl's SFT trainer only
validates loss and has no stopping hook, so we wrap its checkpoint handler: after verl saves
``global_step_N`` (with its HF directory), ``on_save(N, hf_dir)`` runs, and training stops when
it returns True. The training loop itself is verl's, untouched.

``CachedMultiTurnSFTDataset`` is verl's ``MultiTurnSFTDataset`` with each item computed once:
on a 2-core CPU the chat template + image processor cost 30-80 ms per item, more than the tiny
model's training step at batch 32; items are pure functions of the row, so later epochs reuse them.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset

# verl's SFT config for one CPU process (see docs/cpu_runtime.md for why each applies on CPU).
CPU_SFT_OVERRIDES = [
    "trainer.device=cpu",
    "trainer.n_gpus_per_node=1",
    "trainer.nnodes=1",
    "trainer.resume_mode=disable",
    "trainer.test_freq=-1",
    "trainer.logger=[console,file]",
    "engine.strategy=fsdp2",
    "engine.use_torch_compile=false",
    # fp32 compute: bf16 autocast is slower on CPUs without bf16 units and adds noise at this size
    "+engine.mixed_precision.param_dtype=fp32",
    "+engine.mixed_precision.reduce_dtype=fp32",
    "+engine.mixed_precision.buffer_dtype=fp32",
    "model.use_remove_padding=false",
    "model.enable_gradient_checkpointing=false",
    "+model.override_config.attn_implementation=sdpa",
    "data.pad_mode=no_padding",
    "data.use_dynamic_bsz=false",
    "data.num_workers=0",
    "data.val_files=null",
    "data.custom_cls.path=pkg://care_verl.adapter.tools.sft",
    "data.custom_cls.name=CachedMultiTurnSFTDataset",
    "checkpoint.save_contents=[model,hf_model]",
    "optim.lr_scheduler_type=constant",
]


class _StopSFT(Exception):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def single_process_env() -> None:
    """The torch.distributed variables of a one-rank job, and the CPU platform for verl."""
    os.environ.setdefault("VERL_PLATFORM", "cpu")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("WANDB_MODE", "disabled")
    for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_ADDR", "127.0.0.1")):
        os.environ.setdefault(key, value)
    os.environ.setdefault("MASTER_PORT", str(_free_port()))


def compose_sft_config(overrides: list[str]):
    """verl's ``sft_trainer_engine`` config + :data:`CPU_SFT_OVERRIDES` + ``overrides``."""
    import verl.trainer
    from hydra import compose, initialize_config_dir

    config_dir = str(Path(verl.trainer.__file__).parent / "config")
    with initialize_config_dir(config_dir=config_dir, version_base=None, job_name="care_verl_sft"):
        return compose(config_name="sft_trainer_engine", overrides=[*CPU_SFT_OVERRIDES, *overrides])


def fit_sft(config, on_save: Callable[[int, Path], bool]) -> None:
    """Train with verl's SFTTrainer; after each checkpoint call ``on_save(step, hf_dir)``; stop on True."""
    import torch
    from verl.trainer.sft_trainer import SFTTrainer
    from verl.utils.distributed import destroy_global_process_group, initialize_global_process_group

    initialize_global_process_group()
    try:
        torch.manual_seed(int(config.trainer.seed))
        trainer = SFTTrainer(config=config)
        handler = trainer.ckpt_handler
        original_save = handler.save_checkpoint

        def save_then_hook(step, *args, **kwargs):
            original_save(step, *args, **kwargs)
            hf_dir = Path(config.trainer.default_local_dir) / f"global_step_{step}" / "huggingface"
            if on_save(step, hf_dir):
                raise _StopSFT

        handler.save_checkpoint = save_then_hook
        try:
            trainer.fit()
        except _StopSFT:
            pass
    finally:
        destroy_global_process_group()


class CachedMultiTurnSFTDataset(MultiTurnSFTDataset):
    """verl's ``MultiTurnSFTDataset`` that computes each item once (items are pure functions of the row)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._cache: dict[int, dict] = {}

    def __getitem__(self, item):
        key = int(item)
        if key not in self._cache:
            self._cache[key] = mask_response_context(super().__getitem__(item), self._response_context(key),
                                                     self.tokenizer, f"{self.parquet_files} row {key}")
        return self._cache[key]

    def _response_context(self, row: int) -> str:
        if "response_context" not in self.dataframe.columns:
            return ""
        value = self.dataframe["response_context"].iloc[row]
        return "" if value is None else str(value)


def mask_response_context(sample: dict, context: str, tokenizer, where: str) -> dict:
    """Loss-mask 0 on the first tokens of the assistant turn that spell ``context`` (the demo's reflection rows:
    wrong reasoning + repair cue are context the model conditions on, never a target)."""
    if not context:
        return sample
    ids = sample["input_ids"].tolist()
    loss_mask = sample["loss_mask"].clone()
    trained = loss_mask.nonzero().flatten().tolist()
    context_ids = tokenizer.encode(context, add_special_tokens=False)
    start = trained[0] if trained else -1
    if start < 0 or ids[start : start + len(context_ids)] != context_ids:
        raise ValueError(f"{where}: response_context does not tokenize as the start of the assistant turn")
    loss_mask[start : start + len(context_ids)] = 0
    return {**sample, "loss_mask": loss_mask}
