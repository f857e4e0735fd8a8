"""verl 0.9.1's FSDP checkpoint merger (``python -m verl.model_merger merge --backend fsdp``) as a call."""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def merge_fsdp_checkpoint(actor: Path, target: Path) -> None:
    """Write the Hugging Face model of verl actor checkpoint ``actor`` (FSDP shards) to ``target``."""
    from verl.model_merger.base_model_merger import ModelMergerConfig
    from verl.model_merger.fsdp_model_merger import FSDPModelMerger

    config = ModelMergerConfig(
        operation="merge",
        backend="fsdp",
        local_dir=str(actor),
        target_dir=str(target),
        hf_model_config_path=str(actor / "huggingface"),
    )
    captured = io.StringIO()
    # The merger prints progress; keep it out of the eval output but available in debug logs.
    with contextlib.redirect_stdout(captured):
        merger = FSDPModelMerger(config)
        merger.merge_and_save()
        merger.cleanup()
    logger.debug("verl model merger output:\n%s", captured.getvalue())
