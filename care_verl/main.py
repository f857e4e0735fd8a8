"""Entry point: ``python -m care_verl.main [+recipe=NAME] [key=value ...]`` (see care_verl.adapter.entry.main)."""

import sys

from care_verl.adapter.entry.main import main

if __name__ == "__main__":
    sys.exit(main())
