"""``python -m meterline COMMAND``: the same as the ``meterline`` command."""

import sys

from meterline.cli import main

if __name__ == "__main__":
    sys.exit(main())
