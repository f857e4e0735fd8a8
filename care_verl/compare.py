"""``python -m care_verl.compare``: GRPO vs CARE vs CARE without RGR (see :mod:`care_verl.demo.compare`)."""

from care_verl.demo.compare import main

if __name__ == "__main__":
    raise SystemExit(main())
