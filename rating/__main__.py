"""``python -m rating``: see :mod:`rating.cli`."""

import sys

from rating.cli import main

sys.exit(main())
