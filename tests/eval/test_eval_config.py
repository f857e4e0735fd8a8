"""The ``key=value`` command line and `EvalConfig` validation: types, defaults, clear errors."""

from __future__ import annotations

from dataclasses import fields

import pytest

from care_verl.eval import BENCHMARKS, DEFAULT_BENCHMARKS, ConfigError, EvalConfig, parse_cli
from care_verl.eval.__main__ import main


def test_every_option_has_help_text():
    for f in fields(EvalConfig):
        assert f.metadata.get("help"), f.name


def test_overrides_are_typed():
    cfg = parse_cli([
        "model=/m", "benchmarks=[mathvista,mmmu]", "data.mathvista=/d/mv.parquet", "limit=3", "batch_size=16",
        "backend=hf", "vllm_kwargs.tensor_parallel_size=2", "chat_template_kwargs.enable_thinking=false",
        "+seed=7", "max_pixels=1605632",
    ])
    assert cfg.benchmarks == ["mathvista", "mmmu"] and cfg.data == {"mathvista": "/d/mv.parquet"}
    assert (cfg.limit, cfg.batch_size, cfg.seed, cfg.max_pixels) == (3, 16, 7, 1605632)
    assert cfg.vllm_kwargs == {"tensor_parallel_size": 2} and cfg.chat_template_kwargs == {"enable_thinking": False}


def test_defaults_are_the_paper_benchmarks():
    cfg = parse_cli(["model=/m"])
    assert cfg.benchmarks == list(DEFAULT_BENCHMARKS) and cfg.limit is None and cfg.backend == "auto"


@pytest.mark.parametrize("value, expected", [("all", list(BENCHMARKS)), ("mathvista,mmmu", ["mathvista", "mmmu"])])
def test_benchmarks_shorthands(value, expected):
    assert parse_cli(["model=/m", f"benchmarks={value}"]).benchmarks == expected


@pytest.mark.parametrize(
    "args, message",
    [
        (["model=/m", "benchmarks=[mathvista,foo]"], "unknown benchmark 'foo'; valid benchmarks: mathvista, mathverse"),
        (["model=/m", "data.foo=/x"], "unknown benchmark 'foo'"),
        (["model=/m", "bogus=1"], "unknown option 'bogus'; valid options: model, benchmarks"),
        (["model=/m", "batch_size=many"], "batch_size: Value 'many'"),
        (["model=/m", "batch_size=0"], "batch_size must be >= 1"),
        (["model=/m", "backend=tgi"], "backend must be one of ('auto', 'hf', 'vllm')"),
        (["model=/m", "template=no placeholder"], "template: template must be one of"),
        (["model=/m", "on_bad_row=ignore"], "on_bad_row must be fail or skip"),
        (["benchmarks=[mmmu]"], "model= is required"),
        (["model"], "expected key=value, got 'model'"),
        (["model=/m", "benchmarks=[mmmu,mmmu]"], "lists a benchmark twice"),
    ],
)
def test_bad_command_lines(args, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_cli(args)


def test_cli_help_and_errors(capsys):
    assert main(["--help"]) == 0
    assert "max_new_tokens=4096" in capsys.readouterr().out
    assert main(["model=/m", "benchmarks=[nope]"]) == 2
    assert "unknown benchmark 'nope'" in capsys.readouterr().err


def test_cli_missing_data_file_is_named(tmp_path, capsys):
    missing = tmp_path / "missing.parquet"
    code = main([f"model={tmp_path}", "benchmarks=[mmmu]", f"data.mmmu={missing}", f"output_dir={tmp_path}/o"])
    assert code == 2
    assert f"data.mmmu: data file not found: {missing}" in capsys.readouterr().err


def test_cli_model_that_is_neither_model_nor_checkpoint(tmp_path, bench_files, capsys):
    args = [f"model={tmp_path}", "benchmarks=[mmmu]", f"data.mmmu={bench_files['mmmu']}", f"output_dir={tmp_path}/o"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "is neither a Hugging Face model folder (config.json + weights) nor a verl checkpoint" in err
