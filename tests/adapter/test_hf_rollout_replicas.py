"""Several hf rollout replicas (trainer.n_gpus_per_node > 1 on CPU) draw independent samples.

Each server counts a prompt's occurrences itself, and verl's load balancer spreads a prompt's n
copies over the replicas, so the sampling seed must also depend on the replica: otherwise the
copies replica 0 and replica 1 serve first are the same sample (seen in the 2-rank e2e run as
6 duplicate pairs among 16 rows; tests/e2e/test_multirank.py checks the run itself).
"""

import asyncio

import pytest

from care_verl.adapter.rollout.hf_rollout import HFServer
from care_verl.data.synthetic import generate_item

CONFIG = {"response_length": 12, "prompt_length": 96, "max_num_seqs": 64, "seed": 3}


@pytest.fixture(scope="module")
def replicas(tiny_vl_path):
    return [HFServer(tiny_vl_path, CONFIG, replica_rank=r) for r in (0, 1)]


def _sample(server, prompt_ids, image) -> list[int]:
    server.prompt_occurrences.clear()  # what a weight sync does: this is the first copy it serves
    out = asyncio.run(server.generate("q", prompt_ids, {"temperature": 1.0}, image_data=[image]))
    return out.token_ids


def test_replicas_draw_different_samples_of_the_same_prompt(replicas):
    item = generate_item("bars", 1, 0, "train", 0)
    proc = replicas[0].processor
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Tallest bar?"}]}]
    text = proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    prompt = proc(text=[text], images=[item.image], return_tensors="pt")["input_ids"][0].tolist()
    first, second = (_sample(server, prompt, item.image) for server in replicas)
    assert first != second
    assert _sample(replicas[1], prompt, item.image) == second  # each replica stays reproducible
