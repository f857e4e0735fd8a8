"""Command line: ``python -m care_verl.data build-rl ...`` and ``... build-sft ...``.

Examples::

    python -m care_verl.data build-rl --chartqa HuggingFaceM4/ChartQA \\
        --geometry3k hiyouga/geometry3k --virl39k /data/ViRL39K \\
        --out data/care_rl/train.parquet --val-out data/care_rl/val.parquet
    python -m care_verl.data build-sft --vision-r1-cold /data/vision_r1_cold/vision_r1_llava_cot_full.json \\
        --image-root /data/vision_r1_cold/llava_cot_images --out sft.parquet

A source is a local parquet/arrow/json/jsonl file, a folder of them, or a Hub dataset id.
The report (JSON) goes next to the output unless ``--report`` is given; a summary is printed.
Exit status 2 when a bad row aborts the build (``--on-bad-row fail``).
"""

from __future__ import annotations

import argparse
import sys

from care_verl.data.build import BuildOptions, SourceSpec, build_rl, build_sft, default_report_path
from care_verl.data.dedup import DEFAULT_NEAR_THRESHOLD
from care_verl.data.images import PAPER_MAX_PIXELS
from care_verl.data.prompt import DEFAULT_TEMPLATE, TEMPLATES
from care_verl.data.report import BadRowError
from care_verl.data.sources.geometry3k import MODES
from care_verl.data.sources.vision_r1 import ASSISTANT_FORMATS


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output parquet path")
    parser.add_argument("--report", help="report JSON path (default: <out stem>.report.json)")
    parser.add_argument("--split", default="train", help="split to load for Hub sources; recorded in extra_info")
    parser.add_argument("--on-bad-row", choices=["skip", "fail"], default="skip",
                        help="skip (and count) rows with a missing/unreadable image or empty answer, or abort")
    parser.add_argument("--no-dedup", action="store_true", help="keep duplicates")
    parser.add_argument("--no-near-dup", action="store_true", help="remove exact duplicates only")
    parser.add_argument("--near-threshold", type=int, default=DEFAULT_NEAR_THRESHOLD,
                        help="max differing bits of the 64-bit image hash for a near duplicate")
    parser.add_argument("--limit", type=int, help="read at most this many rows per source")
    parser.add_argument("--image-root", action="append", default=[],
                        help="folder or .zip holding relative image paths (repeatable; default: the source's folder)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m care_verl.data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    rl = sub.add_parser("build-rl", help="ChartQA / Geometry3K / ViRL39K -> verl RL parquet")
    rl.add_argument("--chartqa", nargs="+", default=[], help="HuggingFaceM4/ChartQA (hub id or files)")
    rl.add_argument("--geometry3k", nargs="+", default=[], help="hiyouga/geometry3k (hub id or files)")
    rl.add_argument("--virl39k", nargs="+", default=[],
                    help="TIGER-Lab/ViRL39K hub id, or 39Krelease.parquet / its folder (with images/ or images.zip)")
    rl.add_argument("--template", default=DEFAULT_TEMPLATE,
                    help=f"prompt template: one of {sorted(TEMPLATES)} or a string containing {{question}}")
    rl.add_argument("--geometry3k-mode", choices=MODES, default="math",
                    help="math: free-form answer (default); choice: options in the prompt, letter answer")
    rl.add_argument("--val-out", help="also write a validation split here: --val-size rows held out of the "
                    "de-duplicated rows (uniformly at random over all sources; never in the training file)")
    rl.add_argument("--val-size", type=int, default=512,
                    help="rows in the validation split (default 512; used with --val-out)")
    rl.add_argument("--val-seed", type=int, default=0, help="seed of the validation draw")
    rl.add_argument("--max-pixels", type=int, default=PAPER_MAX_PIXELS,
                    help=f"scale larger images down to this many pixels (default {PAPER_MAX_PIXELS} = 1280 "
                         "Qwen2.5-VL visual tokens, so prompts fit 2048 tokens); 0 keeps them as they are")
    _common(rl)

    sft = sub.add_parser("build-sft", help="Vision-R1-cold -> verl multi-turn SFT parquet")
    sft.add_argument("--vision-r1-cold", nargs="+", required=True, help="Vision-R1-cold JSON files")
    sft.add_argument("--assistant-format", choices=ASSISTANT_FORMATS, default="keep",
                     help="think_answer: wrap the text after </think> in <answer></answer>")
    _common(sft)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = _parser().parse_args(argv)
    options = BuildOptions(
        split=args.split,
        dedup=not args.no_dedup,
        near_dup=not args.no_near_dup,
        near_threshold=args.near_threshold,
        on_bad_row=args.on_bad_row,
        limit=args.limit,
    )
    try:
        if args.command == "build-rl":
            options.template = args.template
            options.geometry3k_mode = args.geometry3k_mode
            if args.val_size < 1 and args.val_out:
                print("error: --val-size must be >= 1", file=sys.stderr)
                return 2
            options.val_out, options.val_size, options.val_seed = args.val_out, args.val_size, args.val_seed
            options.max_pixels = args.max_pixels or None
            specs = [
                SourceSpec(name, location, list(args.image_root))
                for name, locations in (("chartqa", args.chartqa), ("geometry3k", args.geometry3k),
                                        ("virl39k", args.virl39k))
                for location in locations
            ]
            if not specs:
                print("error: give at least one of --chartqa/--geometry3k/--virl39k", file=sys.stderr)
                return 2
            report = build_rl(specs, args.out, options)
        else:
            options.assistant_format = args.assistant_format
            specs = [SourceSpec("vision_r1_cold", location, list(args.image_root)) for location in args.vision_r1_cold]
            report = build_sft(specs, args.out, options)
    except BadRowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report_path = args.report or default_report_path(args.out)
    report.write(report_path)
    print(report.summary())
    print(f"report: {report_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
