"""Fault-injecting graders for the pool tests, run inside worker processes.

Each behaves like the real grader except when the response contains a trigger word.
Workers import this module by name, so it must stay importable from ``sys.path``.
"""

from __future__ import annotations

import os
import time
from typing import Any

from care_verl.verifier.grade import grade_item
from care_verl.verifier.request import GradeRequest


def hang_on_trigger(req: GradeRequest) -> dict[str, Any]:
    """Sleep forever on "HANG" (a grader stuck in sympy, without the CPU burn)."""
    if "HANG" in req.solution_str:
        time.sleep(3600)
    return grade_item(req)


def crash_on_trigger(req: GradeRequest) -> dict[str, Any]:
    """Exit the process abruptly on "CRASH" (a segfault or OOM kill)."""
    if "CRASH" in req.solution_str:
        os._exit(3)
    return grade_item(req)


def raise_on_trigger(req: GradeRequest) -> dict[str, Any]:
    """Raise on "RAISE" (a grader bug)."""
    if "RAISE" in req.solution_str:
        raise RuntimeError("injected grader failure")
    return grade_item(req)


def busy_on_trigger(req: GradeRequest) -> dict[str, Any]:
    """Spin the CPU on "BUSY" (pure-Python loop that never yields)."""
    if "BUSY" in req.solution_str:
        while True:
            pass
    return grade_item(req)
