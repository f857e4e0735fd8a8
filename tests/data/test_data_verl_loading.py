"""The built parquet files load in verl's own datasets, with a tiny locally built processor."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from data_fixtures import chart_image, encode, tiny_processor, write_chartqa, write_geometry3k  # noqa: E402

from care_verl.data.build import SourceSpec, build_rl  # noqa: E402

rl_dataset = pytest.importorskip("verl.utils.dataset.rl_dataset")
OmegaConf = pytest.importorskip("omegaconf").OmegaConf


@pytest.fixture()
def rl_parquet(tmp_path: Path) -> Path:
    chart = write_chartqa(tmp_path / "chart.parquet", [
        {"image": encode(chart_image(i)), "query": f"What is bar {i}?", "label": [str(i)], "human_or_machine": 0}
        for i in range(3)
    ])
    geo = write_geometry3k(tmp_path / "geo.parquet", [
        {"images": [encode(chart_image(9)), encode(chart_image(10), "JPEG")], "problem": "<image><image>Find x.",
         "answer": "4", "id": 7, "choices": ["1", "4"], "ground_truth": "B"},
    ])
    out = tmp_path / "train.parquet"
    build_rl([SourceSpec("chartqa", str(chart)), SourceSpec("geometry3k", str(geo))], out)
    return out


def test_rl_parquet_loads_in_verl_rlhf_dataset(rl_parquet: Path, tmp_path: Path) -> None:
    processor = tiny_processor()
    config = OmegaConf.create({
        "prompt_key": "prompt", "image_key": "images", "max_prompt_length": 4096, "filter_overlong_prompts": True,
        # 0 = filter in this process: datasets forks a pool for any num_proc >= 1, and forking a test
        # process that already runs threads (verifier pool, torch) can deadlock.
        "filter_overlong_prompts_workers": 0, "cache_dir": str(tmp_path / "cache"), "truncation": "error",
    })
    dataset = rl_dataset.RLHFDataset([str(rl_parquet)], processor.tokenizer, config, processor=processor)
    # The overlong filter renders every prompt through the processor (images included) and drops
    # rows that fail; nothing may be dropped.
    assert len(dataset) == 4
    item = dataset[3]
    content = item["raw_prompt"][0]["content"]
    assert [part["type"] for part in content] == ["image", "image", "text"]
    assert item["reward_model"]["ground_truth"] == "4"
    assert item["extra_info"]["answer_type"] == "math"
    images, _, _ = rl_dataset.RLHFDataset._process_multi_modal_info(item["raw_prompt"], 14, config)
    assert len(images) == 2


def test_sft_parquet_loads_in_verl_multiturn_sft_dataset(tmp_path: Path) -> None:
    sft_module = pytest.importorskip("verl.utils.dataset.multiturn_sft_dataset")
    from data_fixtures import vision_r1_roots, write_vision_r1

    from care_verl.data.build import build_sft

    llava, mulberry = write_vision_r1(tmp_path)
    out = tmp_path / "sft.parquet"
    roots = vision_r1_roots(tmp_path)
    build_sft([SourceSpec("vision_r1_cold", str(llava), roots), SourceSpec("vision_r1_cold", str(mulberry), roots)], out)
    processor = tiny_processor()
    config = OmegaConf.create({"max_length": 4096, "truncation": "right"})
    dataset = sft_module.MultiTurnSFTDataset([str(out)], processor.tokenizer, config, processor=processor)
    assert len(dataset) == 3
    for i in range(3):
        item = dataset[i]
        assert item["loss_mask"].sum() > 0
        assert item["multi_modal_inputs"]["image_grid_thw"].shape[0] >= 1


def test_overlong_filter_says_how_many_prompts_it_dropped(rl_parquet: Path, tmp_path: Path, capsys) -> None:
    import care_verl.adapter.entry.register  # noqa: F401  (the plugin, as verl loads it in every process)

    processor = tiny_processor()
    config = OmegaConf.create({
        "prompt_key": "prompt", "image_key": "images", "max_prompt_length": 4096, "filter_overlong_prompts": True,
        "filter_overlong_prompts_workers": 0, "cache_dir": str(tmp_path / "cache"), "truncation": "error",
    })
    lengths = []
    for limit in (4096, None):
        if limit is None:  # one token below the longest prompt (the two-image row): exactly that row is dropped
            limit = max(lengths) - 1
        config.max_prompt_length = limit
        dataset = rl_dataset.RLHFDataset([str(rl_parquet)], processor.tokenizer, config, processor=processor)
        if not lengths:
            lengths = [len(processor(text=[processor.apply_chat_template(dataset[i]["raw_prompt"],
                                                                         add_generation_prompt=True, tokenize=False)],
                                     images=rl_dataset.RLHFDataset._process_multi_modal_info(
                                         dataset[i]["raw_prompt"], 14, config)[0])["input_ids"][0])
                       for i in range(len(dataset))]
    out = capsys.readouterr().out
    assert "care_verl: the overlong-prompt filter dropped 0 of 4 prompts" in out
    assert f"care_verl: the overlong-prompt filter dropped 1 of 4 prompts (25.0%) longer than " \
           f"data.max_prompt_length={max(lengths) - 1}" in out
