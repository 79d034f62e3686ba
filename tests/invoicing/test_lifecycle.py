import pytest

from invoicing.lifecycle import RANK, Status, check_transition, status_of
from schemas.errors import InvalidInput


def test_draft_to_issued_to_void_with_reason() -> None:
    check_transition("inv", Status.DRAFT, Status.ISSUED)
    check_transition("inv", Status.ISSUED, Status.VOID, "wrong plan")


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (Status.ISSUED, Status.DRAFT),
        (Status.ISSUED, Status.ISSUED),
        (Status.VOID, Status.ISSUED),
        (Status.VOID, Status.VOID),
        (Status.DRAFT, Status.VOID),
    ],
)
def test_other_transitions_are_refused(current: Status, target: Status) -> None:
    with pytest.raises(InvalidInput, match=f"cannot go from {current} to {target}"):
        check_transition("inv", current, target, "because")


def test_void_needs_a_reason() -> None:
    with pytest.raises(InvalidInput, match="reason"):
        check_transition("inv", Status.ISSUED, Status.VOID, "  ")


def test_states_only_move_forward() -> None:
    assert [status_of(rank) for rank in sorted(RANK.values())] == list(Status)
