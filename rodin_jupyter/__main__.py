"""``python -m rodin_jupyter`` is the command line."""

import sys

from rodin_jupyter.cli import main

sys.exit(main())
