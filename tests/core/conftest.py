"""Makes the slow reference (care_core_reference.py) importable under any pytest import mode."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
