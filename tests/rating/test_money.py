from __future__ import annotations

from decimal import Decimal

import pytest

from rating import currency_codes, minor_units, round_money
from rating.money import format_decimal, is_currency
from schemas.errors import InvalidInput


@pytest.mark.parametrize(
    ("code", "digits"),
    [("JPY", 0), ("KRW", 0), ("USD", 2), ("EUR", 2), ("KWD", 3), ("BHD", 3), ("CLF", 4)],
)
def test_minor_units_follow_iso_4217(code: str, digits: int) -> None:
    assert minor_units(code) == digits


@pytest.mark.parametrize(
    ("amount", "code", "rounded"),
    [
        ("0.125", "USD", "0.13"),  # half goes up, not to even
        ("0.135", "USD", "0.14"),
        ("2.675", "USD", "2.68"),
        ("0.124999", "USD", "0.12"),
        ("18.5175", "USD", "18.52"),
        ("1234.5", "JPY", "1235"),
        ("1233.5", "JPY", "1234"),
        ("1.2345", "KWD", "1.235"),
        ("0", "USD", "0.00"),
        ("12.5", "USD", "12.50"),
        ("12", "KWD", "12.000"),
        ("99999999999999999999.995", "USD", "100000000000000000000.00"),
    ],
)
def test_round_money_is_half_up_to_the_minor_unit(amount: str, code: str, rounded: str) -> None:
    result = round_money(Decimal(amount), code)
    assert str(result) == rounded
    assert result.as_tuple().exponent == -minor_units(code)


def test_unknown_currency_is_invalid_input_with_a_fix() -> None:
    with pytest.raises(InvalidInput) as caught:
        minor_units("usd")
    assert caught.value.problems[0].path == "currency"
    assert "USD" in caught.value.problems[0].fix
    with pytest.raises(InvalidInput):
        round_money(Decimal(1), "XYZ")


def test_currency_table_is_well_formed() -> None:
    codes = currency_codes()
    assert len(codes) == len(set(codes)) > 150
    assert all(len(code) == 3 and code.isupper() and code.isalpha() for code in codes)
    assert is_currency("USD")
    assert not is_currency("XAU")  # no minor unit in ISO 4217: not a billing currency


def test_format_decimal_never_uses_an_exponent() -> None:
    assert format_decimal(Decimal("1E+3")) == "1000"
    assert format_decimal(Decimal("0E-8")) == "0.00000000"
    assert format_decimal(Decimal("12.50")) == "12.50"
