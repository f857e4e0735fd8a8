"""``python -m care_verl.eval model=PATH [key=value ...]``: evaluate and print the results table."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from care_verl.eval.config import ConfigError, config_help, parse_cli


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (2 for a bad command line or bad input data)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help", "help") for a in args):
        print(config_help())
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = parse_cli(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from care_verl.eval.runner import run_eval

    try:
        report = run_eval(cfg)
    except (ValueError, FileNotFoundError) as exc:  # bad input (data, model path): say what, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.table)
    print(f"\nper-item outputs and results.json/results.md in {report.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
