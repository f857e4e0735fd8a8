"""`ScriptedBackend`: returns given responses instead of running a model.

Used by the scoring tests (known predictions -> known verdicts) and by ``predictions=FILE``,
which re-scores the per-item JSONL of an earlier run without generating again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from care_verl.eval.backends.base import GenerationRequest

__all__ = ["ScriptedBackend", "read_predictions"]


class ScriptedBackend:
    """Responses looked up by ``(benchmark, id)``.

    Args:
        responses: ``{(benchmark, id): response}``.
        default: Response for items not in `responses`; None makes a missing item an error.
    """

    name = "scripted"

    def __init__(self, responses: Mapping[tuple[str, str], str], default: str | None = None) -> None:
        self.responses = dict(responses)
        self.default = default

    def render(self, user_text: str) -> str:
        return user_text

    def generate(self, requests: Sequence[GenerationRequest]) -> list[str]:
        out = []
        for request in requests:
            key = (request.item.benchmark, request.item.id)
            if key in self.responses:
                out.append(self.responses[key])
            elif self.default is not None:
                out.append(self.default)
            else:
                raise KeyError(f"no scripted response for {key[0]} item {key[1]!r}")
        return out

    def close(self) -> None:
        return None


def read_predictions(path: str | Path) -> dict[tuple[str, str], str]:
    """``{(benchmark, id): prediction}`` from per-item JSONL files (a file, or a run folder)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.jsonl"))
        if not files:
            raise FileNotFoundError(f"no per-item .jsonl files in {path}")
    elif path.is_file():
        files = [path]
    else:
        raise FileNotFoundError(f"predictions file not found: {path}")
    responses: dict[tuple[str, str], str] = {}
    for file in files:
        with file.open(encoding="utf-8") as handle:
            for line_no, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    key = (str(record["benchmark"]), str(record["id"]))
                    responses[key] = str(record["prediction"])
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    raise ValueError(
                        f"{file}: line {line_no}: expected a JSON object with benchmark, id and prediction ({exc})"
                    ) from exc
    return responses
