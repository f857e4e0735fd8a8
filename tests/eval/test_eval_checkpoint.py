"""verl FSDP checkpoint -> Hugging Face folder: detection, conversion with verl's merger, caching,
and errors for incomplete checkpoints. The checkpoint is written by verl's own
FSDPCheckpointManager (see make_fsdp_checkpoint.py)."""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from care_verl.eval.checkpoint import MARKER, find_actor_dir, resolve_model


@pytest.fixture(scope="module")
def converted(fsdp_checkpoint, convert_dir):
    return resolve_model(str(fsdp_checkpoint), str(convert_dir)), convert_dir


def test_actor_dir_found_from_run_step_or_actor(fsdp_checkpoint):
    actor = fsdp_checkpoint / "global_step_3" / "actor"
    assert find_actor_dir(fsdp_checkpoint) == actor  # via latest_checkpointed_iteration.txt
    assert find_actor_dir(actor.parent) == actor
    assert find_actor_dir(actor) == actor
    assert (actor / "model_world_size_1_rank_0.pt").is_file() and (actor / "huggingface" / "config.json").is_file()


def test_conversion_matches_the_shards(converted, fsdp_checkpoint, tiny_vl_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    resolved, _ = converted
    assert resolved.checkpoint == str(fsdp_checkpoint / "global_step_3" / "actor")
    model = AutoModelForImageTextToText.from_pretrained(resolved.path, dtype=torch.float32)
    AutoProcessor.from_pretrained(resolved.path)  # tokenizer + image processor came along
    shards = torch.load(fsdp_checkpoint / "global_step_3" / "actor" / "model_world_size_1_rank_0.pt",
                        map_location="cpu", weights_only=False)
    state = model.state_dict()
    base = AutoModelForImageTextToText.from_pretrained(tiny_vl_path, dtype=torch.float32).state_dict()
    for name, shard in shards.items():
        # verl's merger stores bfloat16: the converted weight is the shard rounded to bf16, exactly.
        expected = shard.to_local().to(torch.bfloat16).float()
        torch.testing.assert_close(state[name], expected, atol=1e-6, rtol=0)
        # every tensor is the base model's plus the fixture's +0.01 shift, rounded to bf16 (an unshifted
        # base tensor, or another tensor, fails here)
        shifted = (base[name] + 0.01).to(torch.bfloat16).float()
        torch.testing.assert_close(state[name], shifted, atol=1e-6, rtol=0, msg=lambda m: f"{name}: {m}")


def test_conversion_is_cached(converted, fsdp_checkpoint):
    resolved, convert_dir = converted
    marker = os.path.join(resolved.path, MARKER)
    before = os.stat(marker).st_mtime_ns
    again = resolve_model(str(fsdp_checkpoint / "global_step_3"), str(convert_dir))
    assert again.path == resolved.path
    assert os.stat(marker).st_mtime_ns == before
    assert len([p for p in convert_dir.iterdir() if not p.name.startswith(".")]) == 1


def test_missing_shard_is_named(fsdp_checkpoint, tmp_path):
    broken = tmp_path / "global_step_3" / "actor"
    shutil.copytree(fsdp_checkpoint / "global_step_3" / "actor", broken)
    (broken / "model_world_size_1_rank_0.pt").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing model shard .*model_world_size_1_rank_0\.pt"):
        resolve_model(str(broken), str(tmp_path / "out"))


def test_stale_latest_step_is_named(fsdp_checkpoint, tmp_path):
    (tmp_path / "latest_checkpointed_iteration.txt").write_text("9")
    with pytest.raises(FileNotFoundError, match=r"names step 9 but .*global_step_9/actor/fsdp_config\.json"):
        resolve_model(str(tmp_path))


def test_missing_model_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="model path not found"):
        resolve_model(str(tmp_path / "nothing"))


def test_hf_folder_and_hub_id_pass_through(tiny_vl_path):
    assert resolve_model(tiny_vl_path).path == tiny_vl_path and resolve_model(tiny_vl_path).checkpoint is None
    assert resolve_model("Qwen/Qwen2.5-VL-7B-Instruct").path == "Qwen/Qwen2.5-VL-7B-Instruct"
