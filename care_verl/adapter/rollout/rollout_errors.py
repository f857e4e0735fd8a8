"""A record of the rollouts that raised, so a run that stops for lack of trajectories names the cause.

When a rollout raises (a broken rollout engine, a bad image, an agent-loop bug), verl 0.9.1's
TransferQueue worker logs it in the agent-loop worker's log and marks the prompt group failed
(``verl/trainer/ppo/v1/agent_loop_tq.py:_run_prompt``). If every group fails, the driver stops
with "Sync replay buffer selected terminal groups with no materializable trajectories ..."
(``verl/trainer/ppo/v1/replay_buffer.py:510``), which does not say why. The cached agent-loop
worker (:mod:`care_verl.adapter.rollout.mm_rollout`) appends the first :data:`MAX_RECORDED` rollout
errors to ``<run.dir>/rollout_errors.log``; ``care_verl.main`` clears the file at launch and, when
the run stops with an error, prints the first one and where the rest are.
"""

from __future__ import annotations

import os
import threading
import traceback
from pathlib import Path
from typing import Optional

FILE_NAME = "rollout_errors.log"
MAX_RECORDED = 20
HEADER = "### rollout error "
_TRACE_LINES = 12


def log_path(run_dir: Optional[str]) -> Optional[Path]:
    return Path(run_dir) / FILE_NAME if run_dir else None


class RolloutErrorLog:
    """Appends rollout errors to the run's log (thread-safe; at most :data:`MAX_RECORDED` per process)."""

    def __init__(self, run_dir: Optional[str]):
        self.path = log_path(run_dir)
        self.count = 0
        self._lock = threading.Lock()

    def record(self, exc: BaseException, where: str = "") -> None:
        with self._lock:
            self.count += 1
            if self.path is None or self.count > MAX_RECORDED:
                return
            trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip().splitlines()
            lines = [f"{HEADER}{self.count} (pid {os.getpid()}{', ' + where if where else ''}): "
                     f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}",
                     *trace[-_TRACE_LINES:], ""]
            try:
                with open(self.path, "a", encoding="utf-8") as fp:
                    fp.write("\n".join(lines) + "\n")
            except OSError:
                pass  # a read-only or vanished run dir must not turn a rollout error into another one


def first_error(run_dir: Optional[str]) -> Optional[tuple[str, int]]:
    """``(first recorded error's header line, number recorded)`` or None when no rollout raised."""
    path = log_path(run_dir)
    if path is None or not path.exists():
        return None
    headers = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
               if line.startswith(HEADER)]
    if not headers:
        return None
    return headers[0][len("### "):], len(headers)


def clear(run_dir: Optional[str]) -> None:
    path = log_path(run_dir)
    if path is not None:
        path.unlink(missing_ok=True)
