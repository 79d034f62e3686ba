"""Rate cards and usage that once priced wrong or crashed, each as a new user wrote it.

Every case here failed before the hardening: a repeated key billed the last price, YAML
1.1 read ``010`` as 8 and ``1:30`` as 90, huge numbers ended in a traceback, and some
problems were reported one at a time.  The fuzz test at the end holds the promise for
any input: the quote command exits 0 or 2, never with a traceback.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from rating import load_rate_card
from rating.card import MAX_CARD_BYTES
from rating.cli import main
from rating.models import Graduated
from schemas.errors import InvalidInput

PER_UNIT = """plans:
  p:
    USD:
      charges:
        - meter: u
          model: per_unit
          unit_price: {price}
"""
GRADUATED = """plans:
  p:
    USD:
      charges:
        - meter: u
          model: graduated
          tiers:
            - up_to: {bound}
              unit_price: 1
            - unit_price: 2
"""


def quote(card: Path, *usage: str) -> tuple[int, str, str]:
    """Run ``rating quote`` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["quote", "--rate-card", str(card), "--plan", "p", "--usage", *usage])
    return code, out.getvalue(), err.getvalue()


def write(tmp_path: Path, text: str, name: str = "card.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def refused(path: Path) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        load_rate_card(path)
    return caught.value


def test_a_repeated_key_is_refused_not_priced_with_the_last_value(tmp_path: Path) -> None:
    card = write(tmp_path, PER_UNIT.format(price="0.01\n          unit_price: 100"))
    code, out, err = quote(card, "u=1")
    assert (code, out) == (2, "")
    assert "charges[0].unit_price: key 'unit_price' is written twice" in err
    assert "(lines 7 and 8)" in err


def test_a_repeated_plan_name_is_refused(tmp_path: Path) -> None:
    body = PER_UNIT.removeprefix("plans:\n")
    problem = refused(write(tmp_path, "plans:\n" + body + body.replace("unit_price: {price}", "")))
    assert "key 'p' is written twice" in problem.problems[0].message


def test_a_repeated_key_in_a_json_card_is_refused(tmp_path: Path) -> None:
    card = write(tmp_path, '{"plans": {"p": {}, "p": {}}}', "card.json")
    assert "key 'p' is written twice" in refused(card).problems[0].message


@pytest.mark.parametrize(
    ("text", "message", "fix"),
    [
        ("010", "leading zero, so YAML 1.1 reads it as the octal number 8", "write 10"),
        ("1:30", "base-60 number in YAML 1.1 (90)", "quote it ('1:30')"),
        ("0x1F", "hexadecimal number (31)", "write it in decimal"),
        ("0b11", "binary number (3)", "write it in decimal"),
        ("yes", "'yes' is read as the boolean true", "write true"),
        ("off", "'off' is read as the boolean false", "write false"),
    ],
)
def test_yaml_1_1_number_surprises_are_refused_with_the_reading_and_a_fix(
    tmp_path: Path, text: str, message: str, fix: str
) -> None:
    problem = refused(write(tmp_path, GRADUATED.format(bound=text))).problems[0]
    assert problem.path.endswith("plans.p.USD.charges[0].tiers[0].up_to")
    assert message in problem.message
    assert fix in problem.fix


def test_quoted_and_decimal_forms_read_as_written(tmp_path: Path) -> None:
    card = load_rate_card(write(tmp_path, GRADUATED.format(bound="1_000")))
    model = card.charges("p", "USD")[0].model
    assert isinstance(model, Graduated)
    assert str(model.tiers[0].up_to) == "1000"


@pytest.mark.parametrize(
    ("card_text", "usage", "message"),
    [
        (PER_UNIT.format(price="1"), "u=1e400", "401 digits before the decimal point"),
        (GRADUATED.format(bound="10"), "u=1e98", "99 digits before the decimal point"),
        (PER_UNIT.format(price="1"), "u=NaN", "finite number"),
        (PER_UNIT.format(price="1"), "u=0.0000000000000000001", "19 digits after"),
        (PER_UNIT.format(price="1.0e400"), "u=1", "unit_price: a number with 401 digits"),
    ],
)
def test_numbers_beyond_the_bounds_exit_2_naming_the_field(
    tmp_path: Path, card_text: str, usage: str, message: str
) -> None:
    code, out, err = quote(write(tmp_path, card_text), usage)
    assert (code, out) == (2, "")
    assert message in err
    assert "Traceback" not in err
    assert "fix:" in err


def test_a_card_with_a_number_beyond_the_bounds_does_not_load(tmp_path: Path) -> None:
    problem = refused(write(tmp_path, PER_UNIT.format(price="1.0e400"))).problems[0]
    assert problem.path == "plans.p.USD.charges[0].unit_price"
    assert "at most 29 digits before the point" in problem.fix


def test_an_amount_the_ledger_cannot_hold_is_refused_naming_the_charge(tmp_path: Path) -> None:
    card = write(tmp_path, PER_UNIT.format(price="10"))
    code, _, err = quote(card, "u=" + "9" * 29)
    assert code == 2
    assert "charge u: priced at 9999" in err
    assert "check the usage of meter 'u'" in err


def test_an_empty_card_says_so(tmp_path: Path) -> None:
    code, _, err = quote(write(tmp_path, ""), "u=1")
    assert code == 2
    assert "the rate card is empty" in err
    assert "_CardShape" not in err


def test_every_problem_of_one_charge_is_reported_in_one_pass(tmp_path: Path) -> None:
    card = """plans:
  p:
    USD:
      charges:
        - meter: u
          model: overage
          base_fee: -5
          included_units: 10
          unit_price: 1
          tiers: [{unit_price: 1}]
          colour: red
        - meter: v
          model: percentage
          percent: 150
          free_events: 3
          free_amount: 10
          min_per_event: 5
          max_per_event: 1
"""
    problems = refused(write(tmp_path, card)).problems
    assert sorted(p.path for p in problems) == [
        "plans.p.USD.charges[0].base_fee",
        "plans.p.USD.charges[0].colour",
        "plans.p.USD.charges[0].unit_price",
        "plans.p.USD.charges[1].free_amount",
        "plans.p.USD.charges[1].min_per_event",
        "plans.p.USD.charges[1].percent",
    ]


def test_a_card_over_the_size_limit_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    card = write(tmp_path, PER_UNIT.format(price="1") + "#" * MAX_CARD_BYTES + "\n")
    problem = refused(card).problems[0]
    assert "more than the 1,048,576 a rate card may have" in problem.message


# -- fuzz: any card text and usage argument exits 0 or 2 ------------------------------------

EDGE = st.sampled_from(
    [
        "-1", "010", "09", "1:30", "0x1F", "1e400", "1.0e400", "1e98", "-1e-400", ".inf",
        "-.inf", ".nan", "NaN", "inf", "yes", "no", "~", "9" * 30, "1." + "3" * 19, "1" * 250,
        "[]", "{}", "abc",
    ]
)  # fmt: skip
VALID = st.sampled_from(
    ["0", "1", "0.5", "100", "1_000", "'0.1'", "1e6", "9" * 29, "1." + "3" * 18, "1e-18"]
)
#: Mostly numbers a card may hold, at their bounds too, so that most cards load and the
#: engine prices the extremes; now and then one it must refuse.
NUMBERS = st.one_of(*[VALID] * 9, EDGE)
TEMPLATES = {
    "per_unit": ["unit_price"],
    "graduated": ["tiers"],
    "volume": ["tiers"],
    "package": ["package_size", "package_price", "free_units"],
    "overage": ["base_fee", "included_units", "unit_price"],
    "percentage": ["percent", "fixed_fee", "min_per_event", "max_per_event"],
    "flat": ["amount"],
    "minimum": ["amount"],
}
EXTRA = st.sampled_from(["bogus: 1", "tiers: []", "free_events: 2", "meter: v"])


@st.composite
def card_texts(
    draw: st.DrawFn, numbers: st.SearchStrategy[str] = NUMBERS, wild: bool = True
) -> str:
    """A card of 1-3 charges on meters u and v; ``wild``: also bad currencies, models,
    extra fields and damaged text."""
    currencies = ["USD"] * 3 + ["JPY", "KWD", "CLF"] + (["usd"] if wild else [])
    currency = draw(st.sampled_from(currencies))
    lines = ["plans:", "  p:", f"    {currency}:", "      charges:"]
    for index in range(draw(st.integers(1, 3))):
        model = draw(st.sampled_from([*TEMPLATES] * 3 + (["nope"] if wild else [])))
        lines += [f"        - model: {model}", f"          id: c{index}"]
        if model not in ("flat", "minimum"):
            meters = ["u", "u", "v"] if wild else ["u"]
            lines.append(f"          meter: {draw(st.sampled_from(meters))}")
        for field in TEMPLATES.get(model, []):
            if field != "tiers":
                lines.append(f"          {field}: {draw(numbers)}")
                continue
            lines.append("          tiers:")
            for last in [False] * draw(st.integers(0, 2)) + [True]:
                up_to = "" if last else f"up_to: {draw(numbers)}, "
                lines.append(f"            - {{{up_to}unit_price: {draw(numbers)}}}")
        if wild and draw(st.integers(0, 9)) == 0:
            lines.append(f"          {draw(EXTRA)}")
    text = "\n".join(lines) + "\n"
    if wild and draw(st.integers(0, 9)) == 0:  # now and then, damage the text itself
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.text(max_size=5)) + text[at:]
    return text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    card=card_texts(),
    usage=st.lists(
        st.tuples(st.sampled_from(["u"] * 6 + ["v", "", "w"]), NUMBERS).map("=".join), max_size=3
    ),
)
def test_fuzz_any_card_and_usage_exit_0_or_2_never_a_traceback(
    tmp_path_factory: pytest.TempPathFactory, card: str, usage: list[str]
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "card.yaml"
    path.write_text(card, encoding="utf-8", errors="surrogatepass")
    code, out, err = quote(path, *(usage or ["u=1"]))  # any exception fails the test
    event("exit 0" if code == 0 else "exit 2")
    assert code in (0, 2), err
    assert (code == 0) == (err == "" and out.startswith("{")), (code, out, err)
    if code == 2:
        assert err.startswith("error: invalid "), err


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    card=card_texts(numbers=VALID, wild=False),
    quantity=VALID,
    amounts=st.lists(VALID, min_size=1, max_size=4),
)
def test_fuzz_cards_at_the_bounds_price_exactly_or_refuse_cleanly(
    tmp_path_factory: pytest.TempPathFactory, card: str, quantity: str, amounts: list[str]
) -> None:
    """Valid cards with numbers at their bounds (29 integer digits, 18 fraction digits),
    every charge on meter u: the engine prices them in its exact context or refuses an
    amount the ledger cannot hold, exit 2; it never needs to round and never fails inside."""
    folder = tmp_path_factory.mktemp("bounds")
    (folder / "card.yaml").write_text(card)
    usage = f"u: {{events: [{', '.join(amounts)}]}}" if "percentage" in card else f"u: {quantity}"
    (folder / "usage.yaml").write_text(usage + "\n")
    files = ["--usage-file", str(folder / "usage.yaml")]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["quote", "--rate-card", str(folder / "card.yaml"), "--plan", "p", *files])
    event("exit 0" if code == 0 else "exit 2")
    assert code in (0, 2), err.getvalue()
    if code == 2:
        assert err.getvalue().startswith("error: invalid "), err.getvalue()
