"""The demo's cold-start SFT data teaches RGR's repair format (no Ray, no training).

A stated share of the SFT rows is ``<think>`` wrong reasoning + ``care.rgr.cue`` + corrected
reasoning ``</think><answer>right</answer>``. These tests check, with the real tokenizer and
processor of the tiny model, verl's SFT dataset class (our cached subclass) and verl's own
rollout prompt builder, that:

* the share is what was asked, and the cue is the RL stage's composed ``care.rgr.cue``;
* RGR's repaired context, built by ``care_verl.reflection.plan_repairs`` from a failed response
  that contains the row's wrong reasoning, is token for token the start of the SFT sequence;
* the context (wrong reasoning + cue) carries loss-mask 0 and the correction after it is trained.
"""

from __future__ import annotations

import types

import pytest
import torch

from care_verl.data import synthetic
from care_verl.demo.sft_data import THINK_OPEN, build_sft_rows, is_reflect_row

DEMO_OVERRIDES = ["+recipe=demo_cpu"]


@pytest.fixture(scope="module")
def rl_config():
    from care_verl.adapter.entry.main import compose_config

    return compose_config(DEMO_OVERRIDES)


@pytest.fixture(scope="module")
def tiny():
    from transformers import AutoProcessor, AutoTokenizer

    from care_verl.models import build_tiny_model

    path = build_tiny_model("qwen2_5_vl")
    return AutoTokenizer.from_pretrained(path), AutoProcessor.from_pretrained(path)


@pytest.mark.parametrize("n,share", [(50, 0.2), (512, 0.2), (7, 0.5), (10, 0.0), (9, 1.0)])
def test_reflection_rows_have_the_stated_share(n, share):
    rows = build_sft_rows(("bars",), 1, n, 0, "train", share, "\nCUE\n" if share else "")
    reflect = [r for r in rows if r["response_context"]]
    assert len(reflect) == int(n * share + 1e-9)  # floor: evenly spread, never more than asked
    assert sum(is_reflect_row(i, share) for i in range(n)) == len(reflect)
    assert all(r["extra_info"]["reflect"] == bool(r["response_context"]) for r in rows)


def test_reflection_row_is_wrong_reasoning_cue_then_the_items_own_reasoning():
    cue = "\nCUE\n"
    rows = build_sft_rows(("bars", "count"), 1, 40, 3, "train", 0.25, cue)
    reflect = [r for r in rows if r["response_context"]]
    assert reflect
    for r in reflect:
        i, task = r["extra_info"]["index"], r["extra_info"]["task"]
        item = synthetic.generate_item(task, 1, 3, "train", i)
        content = r["messages"][1]["content"]
        context = r["response_context"]
        assert context.startswith(THINK_OPEN) and context.endswith(cue) and content.startswith(context)
        assert content.count(cue) == 1
        assert content[len(context):] == f"{item.think}</think><answer>{item.answer}</answer>"
        wrong = context[len(THINK_OPEN):-len(cue)]
        assert wrong and wrong != item.think
        # the wrong reasoning concludes differently (its last number is not the answer)
        assert wrong.rstrip(".").split()[-1] != item.answer
    plain = [r for r in rows if not r["response_context"]]
    assert all(r["messages"][1]["content"] == synthetic.sft_response(
        synthetic.generate_item(r["extra_info"]["task"], 1, 3, "train", r["extra_info"]["index"])) for r in plain)


def test_bad_share_and_missing_cue_are_refused():
    with pytest.raises(ValueError, match="reflect_share"):
        build_sft_rows(("bars",), 1, 4, 0, "train", 1.5, "x")
    with pytest.raises(ValueError, match="care.rgr.cue"):
        build_sft_rows(("bars",), 1, 4, 0, "train", 0.2, "")


def test_sft_cue_is_the_rl_stage_care_rgr_cue(rl_config):
    from care_verl.adapter.step.care_settings import care_settings_from_config
    from care_verl.demo.stages import rl_repair_cue

    assert rl_repair_cue("demo_cpu", []) == care_settings_from_config(rl_config).rgr.cue
    assert rl_repair_cue("demo_cpu", ["care.rgr.cue='\nCheck each bar again.\n'"]) == "\nCheck each bar again.\n"


def _sft_dataset(tmp_path, tok, proc, cue, n=10):
    from omegaconf import OmegaConf

    from care_verl.adapter.tools.sft import CachedMultiTurnSFTDataset
    from care_verl.demo.stages import write_sft_data

    path = write_sft_data(tmp_path, ("bars",), 1, n, reflect_share=0.2, cue=cue)
    cfg = OmegaConf.create({"max_length": 256, "pad_mode": "no_padding", "truncation": "error"})
    return CachedMultiTurnSFTDataset(parquet_files=str(path), tokenizer=tok, config=cfg, processor=proc)


def test_rgr_repaired_context_tokenizes_as_in_the_sft_data(tmp_path, tiny, rl_config):
    from verl.utils.tokenizer.continuous_token_wiring import create_continuous_token_builder

    from care_verl.adapter.step.care_settings import care_settings_from_config
    from care_verl.adapter.step.rgr import RgrRunner
    from care_verl.adapter.step.trainer import build_span_tags
    from care_verl.reflection import plan_repairs, repaired_response

    tok, proc = tiny
    care = care_settings_from_config(rl_config)
    ds = _sft_dataset(tmp_path, tok, proc, care.rgr.cue)
    # RgrRunner reads only the tokenizer and the rollout's log-prob flag from its trainer here;
    # a full verl trainer needs Ray and workers, which this data check does not.
    trainer = types.SimpleNamespace(tokenizer=tok, config=rl_config)
    runner = RgrRunner(trainer, care.rgr, build_span_tags(tok, care.tags))
    assert runner.cue_ids == tok.encode(care.rgr.cue, add_special_tokens=False) and runner.cue_ids
    # the rollout prompt exactly as verl's agent loop builds it (continuous-token builder + processor)
    builder = create_continuous_token_builder(tok, hf_model_type="qwen2_5_vl", processor=proc)

    checked = 0
    for row in range(len(ds)):
        context = ds.dataframe["response_context"].iloc[row]
        if not context:
            continue
        item = synthetic.generate_item("bars", 1, 0, "train", row)
        text = synthetic.prompt_text(item.question).replace("<image>", "")
        prompt = builder.build_initial_tokens([{"role": "user", "content": [{"type": "image"},
                                                                             {"type": "text", "text": text}]}],
                                              images=[item.image])
        # the policy's failed rollout: the same wrong reasoning, closed with a wrong answer
        wrong = str(context)[len(THINK_OPEN):-len(care.rgr.cue)]
        failed = tok.encode(f"{THINK_OPEN}{wrong}</think><answer>0</answer>", add_special_tokens=False)
        plans, skipped = plan_repairs([0], [0], {0: prompt}, {0: failed}, runner.close_variants, runner.cue_ids,
                                      rl_config.data.max_prompt_length, rl_config.data.max_response_length)
        assert not skipped, "the repaired context must fit the demo recipe's prompt limit"
        repaired_context = prompt + plans[0].context_response
        sample = ds[row]
        ids, loss_mask = sample["input_ids"].tolist(), sample["loss_mask"].tolist()
        assert ids[: len(repaired_context)] == repaired_context
        # the cue tokens are masked in the RL row too, and nothing of the context is trained in SFT
        _, rl_mask = repaired_response(plans[0], [1, 2])
        assert rl_mask[len(plans[0].prefix):len(plans[0].context_response)] == [0] * len(runner.cue_ids)
        assert set(loss_mask[: len(repaired_context)]) == {0}
        assert loss_mask[len(repaired_context)] == 1
        assert tok.decode([t for t, m in zip(ids, loss_mask) if m]) == \
            f"{item.think}</think><answer>{item.answer}</answer><|im_end|>\n"
        checked += 1
    assert checked == 2


def test_plain_rows_train_the_whole_response_and_bad_context_names_the_row(tmp_path, tiny):
    from care_verl.adapter.tools.sft import mask_response_context

    tok, proc = tiny
    ds = _sft_dataset(tmp_path, tok, proc, "\nCUE\n")
    plain = next(i for i in range(len(ds)) if not ds.dataframe["response_context"].iloc[i])
    sample = ds[plain]
    trained = tok.decode([t for t, m in zip(sample["input_ids"].tolist(), sample["loss_mask"].tolist()) if m])
    assert trained.startswith(THINK_OPEN) and trained.endswith("</answer><|im_end|>\n")
    with pytest.raises(ValueError, match="row 7"):
        mask_response_context(sample, "<answer>not the start", tok, "sft.parquet row 7")
    out = mask_response_context(sample, "", tok, "x")
    assert torch.equal(out["loss_mask"], sample["loss_mask"])
