"""Slurm helpers for ``launch/slurm/care.sbatch``: ``python -m care_verl.launch.slurm hostnames EXPR``.

:func:`expand_hostlist` is the fallback for ``scontrol show hostnames`` when ``scontrol`` is not on
PATH (dry runs on a laptop, CI, the tests here). It understands the hostlist syntax Slurm prints in
``SLURM_JOB_NODELIST``: comma-separated items, each with any number of bracket groups of
comma-separated numbers and ranges, zero padding kept (``gpu[01-03,07]``, ``r[1-2]n[1-2]``).
"""

from __future__ import annotations

import argparse
import itertools
import re
import sys

_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def _split_top_level(expr: str) -> list[str]:
    """Split on commas outside brackets."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(expr):
        if ch == "[":
            depth += 1
            if depth > 1:
                raise ValueError(f"nested brackets in hostlist {expr!r}")
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced ']' in hostlist {expr!r}")
        elif ch == "," and depth == 0:
            items.append(expr[start:i])
            start = i + 1
    if depth != 0:
        raise ValueError(f"unbalanced '[' in hostlist {expr!r}")
    items.append(expr[start:])
    return [item.strip() for item in items if item.strip()]


def _expand_group(group: str, expr: str) -> list[str]:
    out: list[str] = []
    for part in group.split(","):
        match = _RANGE.match(part.strip())
        if not match:
            raise ValueError(f"bad range {part!r} in hostlist {expr!r}")
        lo_text, hi_text = match.group(1), match.group(2) or match.group(1)
        lo, hi = int(lo_text), int(hi_text)
        if hi < lo:
            raise ValueError(f"descending range {part!r} in hostlist {expr!r}")
        width = len(lo_text)
        out.extend(str(n).zfill(width) for n in range(lo, hi + 1))
    return out


def _expand_item(item: str, expr: str) -> list[str]:
    pieces = re.split(r"(\[[^\]]*\])", item)
    choices = [_expand_group(p[1:-1], expr) if p.startswith("[") else [p] for p in pieces if p]
    return ["".join(combo) for combo in itertools.product(*choices)]


def expand_hostlist(expr: str) -> list[str]:
    """``"gpu[01-02],cpu7"`` -> ``["gpu01", "gpu02", "cpu7"]`` (order kept, duplicates dropped)."""
    hosts: list[str] = []
    for item in _split_top_level(expr.strip()):
        for host in _expand_item(item, expr):
            if host not in hosts:
                hosts.append(host)
    if not hosts:
        raise ValueError(f"empty hostlist {expr!r}")
    return hosts


def gpus_from_slurm(value: str) -> int:
    """``SLURM_GPUS_PER_NODE`` / ``SLURM_GPUS_ON_NODE`` value (``8``, ``a100:8``, ``gpu:h100:4``) -> int."""
    last = value.strip().split(",")[0].split(":")[-1]
    match = re.match(r"^(\d+)", last)
    if not match:
        raise ValueError(f"cannot read a GPU count from {value!r}")
    return int(match.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m care_verl.launch.slurm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    hostnames = sub.add_parser("hostnames", help="expand a Slurm hostlist, one host per line (like scontrol show hostnames)")
    hostnames.add_argument("hostlist")
    gpus = sub.add_parser("gpus", help="GPU count from a SLURM_GPUS_* value")
    gpus.add_argument("value")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "hostnames":
            print("\n".join(expand_hostlist(args.hostlist)))
        else:
            print(gpus_from_slurm(args.value))
    except ValueError as exc:
        print(f"care_verl.launch.slurm: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
