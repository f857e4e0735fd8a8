"""Rewards scored in the agent-loop worker (care_verl/adapter/rollout/local_reward.py) give what verl's
reward actor gives for the same row, with the real reward worker class, tokenizer and verifier."""

from __future__ import annotations

import asyncio
import copy

import cloudpickle
import numpy as np
import pytest
import torch
from PIL import Image

from care_verl.adapter.entry.main import build_config
from care_verl.adapter.rollout.local_reward import LocalRewardHandle, copy_row_like_ray, local_reward_applies


@pytest.fixture(scope="module")
def config():
    return build_config(["+recipe=tiny_cpu"])


def _row(tokenizer, response: str, answer: str, index: int):
    """One row as verl's ``AgentLoopWorker._compute_score`` builds it (agent_loop.py:975-1022)."""
    from tensordict import TensorDict
    from verl import DataProto

    prompt = torch.tensor(tokenizer.encode("What is 2+3?"), dtype=torch.long)
    resp = torch.tensor(tokenizer.encode(response), dtype=torch.long)
    ids = torch.cat([prompt, resp])
    batch = TensorDict({"prompts": prompt[None], "responses": resp[None], "input_ids": ids[None],
                        "attention_mask": torch.ones_like(ids)[None], "position_ids": torch.arange(len(ids))[None]},
                       batch_size=1)
    kwargs = {"data_source": "synthetic", "reward_model": {"ground_truth": answer, "style": "rule"},
              "extra_info": {"index": index, "answer_type": "numeric"},
              "multi_modal_data": {"images": [Image.new("RGB", (28, 28), (index, 0, 0))]}}
    non_tensor = {**{k: np.array([v] * 1) for k, v in kwargs.items()},
                  "__num_turns__": np.array([2]), "tool_extra_fields": np.array([{}], dtype=object),
                  "prompt_len": np.array([len(prompt)]), "response_len": np.array([len(resp)])}
    return DataProto(batch=batch, non_tensor_batch=non_tensor), kwargs


def test_local_reward_matches_the_reward_actor_and_leaves_the_prompt_fields_alone(config):
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker
    from verl.utils import hf_tokenizer

    tokenizer = hf_tokenizer(config.actor_rollout_ref.model.path)
    responses = [("<think>2+3=5</think><answer>5</answer>", "5"), ("<think>2+3=6</think><answer>6</answer>", "5"),
                 ("no tags 5", "5")]

    async def both():
        actor = RewardLoopWorker(config, None)  # what a Ray reward actor runs, fed a pickled copy
        local = LocalRewardHandle(config)
        out = []
        for i, (text, answer) in enumerate(responses):
            data, kwargs = _row(tokenizer, text, answer, i)
            before = copy.deepcopy(kwargs["extra_info"])
            via_ray = await actor.compute_score(cloudpickle.loads(cloudpickle.dumps(data)))
            here = await local.compute_score.remote(data)
            out.append((via_ray, here, before, kwargs["extra_info"]))
        return out, local.calls

    results, calls = asyncio.run(both())
    assert calls == len(responses)
    for via_ray, here, before, after in results:
        assert here == via_ray
        # the reward manager adds num_turns etc. to extra_info: on the copy, not on the prompt's dict
        assert after == before
    accs = [here["reward_extra_info"]["acc"] for _, here, _, _ in results]
    assert accs == [1.0, 0.0, 0.0]  # the real verifier graded them
    assert results[0][1]["reward_score"] > results[2][1]["reward_score"]  # format bonus on the tagged answer


def test_copy_shares_images_and_copies_dicts():
    from verl import DataProto

    image = Image.new("RGB", (4, 4))
    extra = {"a": [1]}
    data = DataProto.from_dict(tensors={"x": torch.zeros(1, 2)},
                               non_tensors={"extra_info": np.array([extra], dtype=object),
                                            "multi_modal_data": np.array([{"images": [image]}], dtype=object)})
    c = copy_row_like_ray(data)
    assert c.non_tensor_batch["extra_info"][0] == extra and c.non_tensor_batch["extra_info"][0] is not extra
    assert c.non_tensor_batch["extra_info"][0]["a"] is not extra["a"]
    assert c.non_tensor_batch["multi_modal_data"][0]["images"][0] is image


def test_local_reward_applies_only_to_rule_based_rewards_with_the_switch_on(config):
    from omegaconf import open_dict

    assert local_reward_applies(config)
    off = build_config(["+recipe=tiny_cpu", "care.rollout.local_reward=false"])
    assert not local_reward_applies(off)
    rm = copy.deepcopy(config)
    with open_dict(rm):
        rm.reward.reward_model.enable = True
    assert not local_reward_applies(rm)


def test_bad_switch_value_fails_at_start_up_naming_the_key():
    from care_verl.adapter.entry.validate import ConfigError

    with pytest.raises(ConfigError, match="care.rollout.local_reward must be true or false"):
        build_config(["+recipe=tiny_cpu", "care.rollout.local_reward=maybe"])
