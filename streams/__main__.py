"""``python -m streams COMMAND``: the worker package's commands (``streams.cli``)."""

import sys

from streams.cli import main

if __name__ == "__main__":
    sys.exit(main())
