"""Input errors survive a trip between processes: a process pool pickles an exception to
hand it back, and an ``InvalidInput`` must arrive with every problem, path and fix."""

from __future__ import annotations

import pickle

from schemas.errors import InvalidInput, Problem


def test_invalid_input_pickles_with_every_problem() -> None:
    raised = InvalidInput(
        "rate card",
        [
            Problem("plans.pro.charges[0].unit_price", "not a decimal", "write e.g. 0.002"),
            Problem("plans.pro.currency", "unknown currency 'USX'", "did you mean 'USD'?"),
        ],
    )
    back = pickle.loads(pickle.dumps(raised))
    assert type(back) is InvalidInput
    assert (back.what, back.problems, str(back)) == (raised.what, raised.problems, str(raised))
