"""``python -m api COMMAND``: the API's commands (``api.cli``)."""

import sys

from api.cli import main

if __name__ == "__main__":
    sys.exit(main())
