"""``python -m care_verl.demo``: see :mod:`care_verl.demo.main`."""

from care_verl.demo.main import main

raise SystemExit(main())
