"""Grading worker process: ``python -m care_verl.verifier.worker --grader module:function``.

Reads `GradeRequest` frames on stdin and writes result frames on a private copy of stdout
(fd 1 itself is pointed at stderr so stray prints cannot corrupt the protocol). It announces
``("ready", pid)`` once the grader and math-verify are imported, so the parent's per-answer
timeout never includes start-up time. It exits when stdin closes (its parent is gone).

Messages out: ``("ready", pid)``, ``("ok", result_dict)``, ``("error", message)``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from care_verl.verifier.protocol import read_frame, write_frame

__all__ = ["load_grader", "main"]


def load_grader(spec: str) -> Callable[[Any], dict[str, Any]]:
    """Import ``"package.module:function"``."""
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise ValueError(f"grader spec must look like 'module:function', got {spec!r}")
    return getattr(importlib.import_module(module_name), attr)


def _limit_memory(megabytes: int) -> None:
    """Cap the address space so a runaway sympy computation fails with MemoryError."""
    if megabytes <= 0:
        return
    try:
        import resource

        limit = megabytes * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):
        pass  # not available on this platform; the parent's timeout still applies


def _exit_with_parent(poll_s: float = 1.0) -> None:
    """Exit when the parent dies, even while the main thread is stuck in a computation.

    A watchdog thread (not PR_SET_PDEATHSIG, which fires when the parent *thread* that spawned
    us exits, and pool replacements are spawned from short-lived caller threads).
    """
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _describe(exc: BaseException) -> str:
    # str() of an exception carrying sympy objects can itself hang; only echo plain strings.
    detail = exc.args[0] if exc.args and isinstance(exc.args[0], str) else ""
    return f"{type(exc).__name__}: {detail[:300]}"


def main(argv: list[str] | None = None) -> int:
    """Serve grading requests until stdin closes."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--grader", required=True)
    parser.add_argument("--memory-limit-mb", type=int, default=0)
    args = parser.parse_args(argv)

    _exit_with_parent()
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    inp = sys.stdin.buffer
    logging.getLogger("math_verify").setLevel(logging.ERROR)

    grader = load_grader(args.grader)
    try:  # warm the heavy imports before announcing readiness
        from care_verl.verifier.graders.mathexpr import _math_verify

        _math_verify()
    except ImportError:
        pass
    _limit_memory(args.memory_limit_mb)
    write_frame(out, ("ready", os.getpid()))

    while True:
        try:
            request = read_frame(inp)
        except EOFError:
            return 0
        try:
            reply: tuple[str, Any] = ("ok", grader(request))
        except BaseException as exc:  # noqa: BLE001 - report everything, incl. MemoryError/RecursionError
            reply = ("error", _describe(exc))
        try:
            write_frame(out, reply)
        except BaseException as exc:  # noqa: BLE001 - e.g. an unpicklable result
            write_frame(out, ("error", f"could not send result: {type(exc).__name__}"))


if __name__ == "__main__":
    sys.exit(main())
