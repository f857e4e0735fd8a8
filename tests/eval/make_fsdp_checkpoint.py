"""Write a verl FSDP checkpoint of a model the way verl's trainer does: ``python make_fsdp_checkpoint.py
MODEL_DIR ACTOR_DIR SHIFT``.

One process (world size 1, gloo on CPU) wraps the model with FSDP2 ``fully_shard`` and saves it
with verl's own ``FSDPCheckpointManager.save_checkpoint``: ``model_world_size_1_rank_0.pt``
(DTensor shards), ``fsdp_config.json`` and ``huggingface/``. Every weight is shifted by SHIFT
first, so a converted model is distinguishable from the original.
"""

from __future__ import annotations

import os
import socket
import sys


def main(model_dir: str, actor_dir: str, shift: float) -> None:
    import torch
    import torch.distributed as dist

    with socket.socket() as sock:  # a free port for the single-process group
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        from omegaconf import OmegaConf
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard
        from transformers import AutoModelForImageTextToText, AutoProcessor
        from verl.utils.checkpoint.fsdp_checkpoint_manager import FSDPCheckpointManager

        model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
        with torch.no_grad():
            for param in model.parameters():
                param.add_(shift)
        fully_shard(model, mesh=init_device_mesh("cpu", (1,), mesh_dim_names=("fsdp",)))
        manager = FSDPCheckpointManager(
            model=model,
            optimizer=None,
            lr_scheduler=None,
            processing_class=AutoProcessor.from_pretrained(model_dir),
            checkpoint_config=OmegaConf.create({"save_contents": ["model"], "load_contents": ["model"]}),
        )
        manager.save_checkpoint(actor_dir, global_step=3)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]))
