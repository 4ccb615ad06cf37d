"""``python -m rodin_jupyter`` is the command line."""

import sys

from .cli import main

sys.exit(main())
