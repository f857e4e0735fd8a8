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
    "data.custom_cls.path=pkg://care_verl.adapter.sft",
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
            self._cache[key] = super().__getitem__(item)
        return self._cache[key]
