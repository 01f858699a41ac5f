"""``python -m nirsd.cli``: the ``nirsd`` command."""

import sys

from .main import main

sys.exit(main())
