"""`python -m animbench ...` (used by torchrun for multi-process training) runs the console script."""

import sys

from animbench.cli import main

sys.exit(main())
