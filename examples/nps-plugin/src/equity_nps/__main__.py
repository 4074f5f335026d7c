import sys

from equity_nps.cli import main

sys.exit(main())
