"""``python -m care_verl.models --kind qwen2_5_vl --out DIR``: build a tiny local model."""

import argparse

from care_verl.models.tiny import KINDS, SIZES, build_tiny_model


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kind", choices=KINDS, default="qwen2_5_vl")
    parser.add_argument("--size", choices=tuple(SIZES), default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="output directory (default: the cache)")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    print(build_tiny_model(args.kind, args.out, seed=args.seed, size=args.size, overwrite=args.overwrite))


if __name__ == "__main__":
    main()
