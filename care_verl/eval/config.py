"""`EvalConfig`: every knob of ``python -m care_verl.eval``, with its help text.

The command line takes Hydra-style ``key=value`` overrides, parsed with OmegaConf against this
dataclass (so types are checked and unknown keys rejected)::

    python -m care_verl.eval model=runs/x/checkpoints/global_step_200/actor \
        benchmarks=[mathvista,mmmu] data.mathvista=/data/mathvista_testmini.parquet limit=100
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from care_verl.data.prompt import DEFAULT_TEMPLATE, resolve_template
from care_verl.eval.backends import BACKENDS
from care_verl.eval.backends.hf import DTYPES
from care_verl.eval.benchmarks import BENCHMARKS, DEFAULT_BENCHMARKS, get_benchmark

__all__ = ["EvalConfig", "parse_cli", "config_help", "ConfigError"]


class ConfigError(ValueError):
    """A bad command line or configuration; the message says which key and what is allowed."""


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class EvalConfig:
    """Evaluation settings (see docs/eval.md)."""

    model: str = field(
        default="",
        metadata=_help(
            "Hugging Face model folder or hub id, or a verl checkpoint (global_step_N/actor, global_step_N, "
            "or a checkpoints folder), converted to a model folder once and cached."
        ),
    )
    benchmarks: list[str] = field(
        default_factory=lambda: list(DEFAULT_BENCHMARKS),
        metadata=_help(f"Benchmarks to run, or [all]. Valid: {', '.join(BENCHMARKS)}."),
    )
    data: dict[str, str] = field(
        default_factory=dict,
        metadata=_help(
            "Per-benchmark data source, e.g. data.mathvista=PATH: a local .parquet/.arrow/.json/.jsonl file or "
            "folder in the benchmark's Hub schema, or a Hub dataset id. Default: the benchmark's Hub dataset."
        ),
    )
    splits: dict[str, str] = field(
        default_factory=dict, metadata=_help("Per-benchmark split override for Hub sources, e.g. splits.mmmu=dev.")
    )
    image_roots: list[str] = field(
        default_factory=list,
        metadata=_help("Extra folders or .zip files for relative image paths (the data file's folder is tried first)."),
    )
    limit: int | None = field(default=None, metadata=_help("Evaluate at most this many rows per benchmark."))
    batch_size: int = field(default=8, metadata=_help("Prompts per generate call (hf) / per submission (vllm)."))
    max_new_tokens: int = field(
        default=4096, metadata=_help("Generation budget per response (greedy decoding, one sample).")
    )
    repetition_penalty: float = field(
        default=1.0,
        metadata=_help("1.0: plain greedy (lmms-eval's hf Qwen2.5-VL path inherits the model's 1.05)."),
    )
    template: str = field(
        default=DEFAULT_TEMPLATE,
        metadata=_help("Prompt template: think_answer | think_boxed | plain, or a string containing {question}."),
    )
    backend: str = field(
        default="auto", metadata=_help("auto (vllm when vLLM and a GPU are present, else hf) | hf | vllm.")
    )
    dtype: str = field(
        default="auto", metadata=_help("hf weights: auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16 | float16.")
    )
    threads: int | None = field(
        default=None, metadata=_help("hf on CPU: torch threads (None: torch's default; 1 is steadier on a busy box).")
    )
    min_pixels: int | None = field(default=None, metadata=_help("Image processor min_pixels (None: the model's)."))
    max_pixels: int | None = field(default=None, metadata=_help("Image processor max_pixels (None: the model's)."))
    chat_template_kwargs: dict[str, Any] = field(
        default_factory=dict, metadata=_help("Extra apply_chat_template arguments, as in training (enable_thinking).")
    )
    vllm_kwargs: dict[str, Any] = field(
        default_factory=dict,
        metadata=_help(
            "Extra vllm.LLM arguments, e.g. vllm_kwargs.tensor_parallel_size=2 vllm_kwargs.max_model_len=32768."
        ),
    )
    output_dir: str = field(
        default="eval_results", metadata=_help("Where <benchmark>.jsonl, results.json and results.md are written.")
    )
    seed: int = field(default=0, metadata=_help("Seed for torch / vLLM (decoding is greedy)."))
    predictions: str | None = field(
        default=None,
        metadata=_help("Re-score saved predictions (a run's output_dir or one of its .jsonl files); no generation."),
    )
    convert_dir: str | None = field(
        default=None, metadata=_help("Cache for converted checkpoints (default $CARE_VERL_CACHE/eval_models).")
    )
    on_bad_row: str = field(
        default="fail", metadata=_help("fail (stop, naming the file and row) | skip (drop the row and count it).")
    )
    verifier_timeout_s: float = field(default=5.0, metadata=_help("Per-answer time limit of the math verifier."))
    label: str | None = field(default=None, metadata=_help("Model name in the results table (default: from model)."))

    def validate(self) -> EvalConfig:
        """Check values; raise `ConfigError` naming the key. Expands ``benchmarks=[all]``."""
        if not self.model and not self.predictions:
            raise ConfigError("model= is required (a model folder, hub id or verl checkpoint), or predictions=PATH")
        if self.benchmarks == ["all"]:
            self.benchmarks = list(BENCHMARKS)
        if not self.benchmarks:
            raise ConfigError("benchmarks= is empty")
        for name in [*self.benchmarks, *self.data, *self.splits]:
            try:
                get_benchmark(name)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        if len(set(self.benchmarks)) != len(self.benchmarks):
            raise ConfigError(f"benchmarks= lists a benchmark twice: {self.benchmarks}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be >= 1 (or null), got {self.limit}")
        for key in ("batch_size", "max_new_tokens"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.on_bad_row not in ("fail", "skip"):
            raise ConfigError(f"on_bad_row must be fail or skip, got {self.on_bad_row!r}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1 (or null), got {self.threads}")
        if not self.repetition_penalty > 0:
            raise ConfigError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if not self.verifier_timeout_s > 0:
            raise ConfigError(f"verifier_timeout_s must be > 0, got {self.verifier_timeout_s}")
        try:
            resolve_template(self.template)
        except ValueError as exc:
            raise ConfigError(f"template: {exc}") from None
        return self


def config_help() -> str:
    """One line per option, with its default and help text."""
    lines = ["usage: python -m care_verl.eval model=PATH [key=value ...]", "", "options:"]
    defaults = EvalConfig()
    for f in fields(EvalConfig):
        lines.append(f"  {f.name}={getattr(defaults, f.name)!r}")
        lines.append(f"      {f.metadata['help']}")
    return "\n".join(lines)


def parse_cli(argv: Sequence[str]) -> EvalConfig:
    """Parse ``key=value`` overrides into a validated `EvalConfig`."""
    from omegaconf import OmegaConf
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

    overrides = []
    for arg in argv:
        if "=" not in arg:
            raise ConfigError(f"expected key=value, got {arg!r} (run with --help for the options)")
        arg = arg[1:] if arg.startswith("+") else arg  # accept Hydra's "+key=value"
        key, value = arg.split("=", 1)
        if key == "benchmarks" and not value.strip().startswith("["):
            arg = f"benchmarks=[{value}]"  # benchmarks=all or benchmarks=mathvista,mmmu
        overrides.append(arg)
    schema = OmegaConf.structured(EvalConfig)
    valid = ", ".join(f.name for f in fields(EvalConfig))
    try:
        merged = OmegaConf.merge(schema, OmegaConf.from_dotlist(overrides))
    except (ConfigKeyError, ConfigAttributeError) as exc:
        raise ConfigError(f"unknown option {getattr(exc, 'full_key', '?')!r}; valid options: {valid}") from None
    except OmegaConfBaseException as exc:
        message = str(exc).splitlines()[0]
        raise ConfigError(f"{getattr(exc, 'full_key', '?')}: {message}") from None
    config = OmegaConf.to_object(merged)
    assert isinstance(config, EvalConfig)
    return config.validate()
