"""``python -m engine.cli``: the ``equity`` command."""

import sys

from engine.cli import main

sys.exit(main())
