"""Currencies, minor units and the one rounding rule of Meterline.

Invariants:

* Money is :class:`~decimal.Decimal`, never ``float``.
* Each invoice line is rounded **once**, to its currency's ISO 4217 minor unit, with
  ``ROUND_HALF_UP`` (a half is rounded away from zero: 0.125 USD -> 0.13 USD).  Nothing
  else in the rating engine rounds; the unrounded amount is kept beside the rounded one.
* Pricing arithmetic runs in :data:`EXACT`, a context that traps ``Inexact``: if a
  product ever needed more than ``EXACT.prec`` digits the engine fails loudly instead of
  silently rounding a cent away.
"""

from __future__ import annotations

from decimal import (
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
)

from schemas.errors import InvalidInput, Problem

__all__ = [
    "EXACT",
    "ROUNDING",
    "ZERO",
    "currency_codes",
    "format_decimal",
    "is_currency",
    "minor_units",
    "round_money",
]

ZERO = Decimal(0)

#: Context for pricing arithmetic: wide, and any rounding at all raises ``decimal.Inexact``.
EXACT = Context(
    prec=100,
    rounding=ROUND_HALF_UP,
    traps=[InvalidOperation, DivisionByZero, Overflow, Inexact],
)

#: The documented rounding mode: per line, half away from zero.
ROUNDING = ROUND_HALF_UP

_QUANTIZE = Context(prec=100, rounding=ROUND_HALF_UP, traps=[InvalidOperation, Overflow])

# ISO 4217 active codes grouped by their minor unit (digits after the decimal point).
# Codes whose minor unit is "N.A." (precious metals, testing codes, SDR) are left out.
_BY_MINOR_UNIT: dict[int, str] = {
    0: "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF",
    2: (
        "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD "
        "BTN BWP BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP "
        "ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR "
        "JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU "
        "MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR "
        "RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS "
        "TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST XCD XCG YER ZAR ZMW ZWG"
    ),
    3: "BHD IQD JOD KWD LYD OMR TND",
    4: "CLF UYW",
}

_MINOR_UNITS: dict[str, int] = {
    code: digits for digits, codes in _BY_MINOR_UNIT.items() for code in codes.split()
}
_QUANTUM: dict[str, Decimal] = {
    code: Decimal(1).scaleb(-digits) for code, digits in _MINOR_UNITS.items()
}


def currency_codes() -> tuple[str, ...]:
    """Every currency code the engine knows, sorted."""
    return tuple(sorted(_MINOR_UNITS))


def is_currency(code: str) -> bool:
    """Whether ``code`` is a known ISO 4217 code (upper case, as ISO writes it)."""
    return code in _MINOR_UNITS


def minor_units(currency: str) -> int:
    """Digits after the decimal point for ``currency``: JPY 0, USD 2, KWD 3, CLF 4.

    Raises :class:`InvalidInput` for a code not in the table.
    """
    try:
        return _MINOR_UNITS[currency]
    except KeyError:
        raise _unknown_currency(currency) from None


def round_money(amount: Decimal, currency: str) -> Decimal:
    """Round ``amount`` to the minor unit of ``currency`` with ROUND_HALF_UP.

    The result always carries exactly ``minor_units(currency)`` decimal places, so
    ``str()`` of it is what an invoice prints (``Decimal("12.5")`` in USD -> ``12.50``).
    """
    try:
        quantum = _QUANTUM[currency]
    except KeyError:
        raise _unknown_currency(currency) from None
    return amount.quantize(quantum, rounding=ROUND_HALF_UP, context=_QUANTIZE)


def format_decimal(value: Decimal) -> str:
    """Plain positional notation, never an exponent: ``Decimal("1E+3")`` -> ``"1000"``."""
    return format(value, "f")


def _unknown_currency(currency: str) -> InvalidInput:
    upper = currency.upper() if isinstance(currency, str) else ""
    fix = (
        f"write it in upper case: {upper}"
        if upper in _MINOR_UNITS
        else "use an ISO 4217 code such as USD, EUR, GBP, JPY or KWD"
    )
    problem = Problem(
        path="currency",
        message=f"unknown currency code {currency!r}",
        fix=fix,
    )
    return InvalidInput("currency", [problem])
