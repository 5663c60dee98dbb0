"""python3 -m benchlib (from tools/): the same as tools/bench."""

import sys

from .main import main

sys.exit(main(sys.argv[1:]))
