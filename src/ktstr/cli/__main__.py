"""``python -m ktstr.cli``: how the tests and benchmarks run the command."""

import sys

from ktstr.cli import main

sys.exit(main())
