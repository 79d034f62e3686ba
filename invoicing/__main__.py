"""``python -m invoicing COMMAND``: the billing commands (``invoicing.cli``)."""

import sys

from invoicing.cli import main

if __name__ == "__main__":
    sys.exit(main())
