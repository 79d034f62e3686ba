"""Example rate cards and usage files; ``docs/pricing.md`` prices every one of them.

Kept as package data so ``python -m rating quote`` can be tried on a fresh install too.
"""

from pathlib import Path

#: The directory holding the example files.
EXAMPLES = Path(__file__).parent
