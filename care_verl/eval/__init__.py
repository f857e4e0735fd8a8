"""Benchmark evaluation of CARE policies: MathVista, MathVerse, MATH-Vision, MMMU, MMMU-Pro.

``python -m care_verl.eval model=PATH benchmarks=[mathvista,mmmu]`` (see docs/eval.md).

Modules, one job each:

* `config` - `EvalConfig` and the ``key=value`` command line;
* `benchmarks` - the registry and one row adapter per benchmark schema;
* `loading` - rows (Hub or local files) -> validated `EvalItem`s;
* `prompting` - the training prompt and chat rendering;
* `backends` - greedy generation: hf (CPU/GPU), vllm (GPU), scripted (tests, re-scoring);
* `scoring` - extraction, parseability and grading with the training verifier;
* `report` - per-item JSONL, metrics and the paper-style table;
* `checkpoint` - verl FSDP checkpoint -> Hugging Face folder (cached);
* `runner` - ties them together.
"""

from care_verl.eval.benchmarks import BENCHMARKS, DEFAULT_BENCHMARKS, PAPER_COLUMNS
from care_verl.eval.config import ConfigError, EvalConfig, parse_cli
from care_verl.eval.runner import EvalReport, run_eval

__all__ = [
    "BENCHMARKS",
    "DEFAULT_BENCHMARKS",
    "PAPER_COLUMNS",
    "ConfigError",
    "EvalConfig",
    "EvalReport",
    "parse_cli",
    "run_eval",
]
