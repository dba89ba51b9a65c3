"""The Form 13F information table (agentgpt.filing): EDGAR's structure read back from the bytes, exact
rounding, canonical output, and input the table cannot carry refused with the field named; and the
price publish_report values ETH at, from analyze_market's result in the session memory."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from agentgpt.errors import InvalidArgument
from agentgpt.filing import (
    NAMESPACE,
    NOT_SUBMITTED,
    PLACEHOLDER_CUSIP,
    Holding,
    exact_decimal,
    information_table,
    round_half_up,
    table_value_total,
)
from services.executor.actions import _eth_price

NS = {"t": NAMESPACE}
E18 = 10**18
PERIOD = date(2025, 3, 31)
# The element order of an infoTable in the specification's schema (optional ones included).
ORDER = [
    "nameOfIssuer",
    "titleOfClass",
    "cusip",
    "figi",
    "value",
    "shrsOrPrnAmt",
    "putCall",
    "investmentDiscretion",
    "otherManager",
    "votingAuthority",
]

ETH = Holding(
    "ETHER (NATIVE COIN OF ARBITRUM, CHAIN ID 31337; NO ISSUER)",
    "NATIVE COIN",
    amount=7 * E18,
    decimals=18,
    usd_per_unit=Fraction(3000),
    price_source="pool reserves",
)
DUSD = Holding(
    "Demo USD (dUSD), ERC-20 TOKEN 0x5FbDB2315678afecb367f032d93F642f64180aa3 ON CHAIN ID 31337",
    "ERC-20 TOKEN",
    amount=8_910_500_000_000_000_000_000,  # 8910.5 dUSD: rounds up to 8911
    decimals=18,
    usd_per_unit=1,
)


def local(tag: str) -> str:
    assert tag.startswith("{" + NAMESPACE + "}"), f"{tag} is outside the information table namespace"
    return tag.split("}", 1)[1]


def rows(xml: bytes) -> list[ET.Element]:
    root = ET.fromstring(xml)
    assert root.tag == f"{{{NAMESPACE}}}informationTable"
    assert [local(c.tag) for c in root] == ["infoTable"] * len(root)
    return list(root)


def children(row: ET.Element, tag: str) -> list[str]:
    element = row.find(f"t:{tag}", NS)
    assert element is not None, f"{tag} missing"
    return [local(c.tag) for c in element]


def field(row: ET.Element, path: str) -> str:
    text = row.findtext("/".join(f"t:{p}" for p in path.split("/")), namespaces=NS)
    assert text is not None, f"{path} missing"
    return text


def test_structure_order_and_values_read_back() -> None:
    full = replace(ETH, figi="BBG000BLNNH6", put_call="Call", other_manager="1,3", voting_sole=2)
    xml = information_table([ETH, DUSD, full], period=PERIOD)
    assert xml.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n')
    xml.decode("utf-8")  # valid UTF-8
    eth, dusd, opt = rows(xml)
    for row in (eth, dusd, opt):
        tags = [local(c.tag) for c in row]
        assert tags == [t for t in ORDER if t in tags], tags  # the schema's order
        assert {"nameOfIssuer", "titleOfClass", "cusip", "value", "shrsOrPrnAmt"} <= set(tags)
        assert {"investmentDiscretion", "votingAuthority"} <= set(tags)
        assert children(row, "shrsOrPrnAmt") == ["sshPrnamt", "sshPrnamtType"]
        assert children(row, "votingAuthority") == ["Sole", "Shared", "None"]
        assert len(field(row, "cusip")) == 9
        for path in (
            "value",
            "shrsOrPrnAmt/sshPrnamt",
            *(f"votingAuthority/{v}" for v in ("Sole", "Shared", "None")),
        ):
            assert field(row, path).isdigit(), (path, field(row, path))  # whole numbers, no decimals
    assert [local(c.tag) for c in eth] == [t for t in ORDER if t not in ("figi", "putCall", "otherManager")]
    assert [local(c.tag) for c in opt] == ORDER
    assert field(eth, "nameOfIssuer") == ETH.name_of_issuer and field(eth, "titleOfClass") == "NATIVE COIN"
    assert field(eth, "cusip") == PLACEHOLDER_CUSIP
    assert field(eth, "value") == "21000"  # 7 ETH x 3000 USD: whole dollars, not thousands
    assert field(eth, "shrsOrPrnAmt/sshPrnamt") == "7" and field(eth, "shrsOrPrnAmt/sshPrnamtType") == "SH"
    assert field(eth, "investmentDiscretion") == "SOLE"
    assert [field(eth, f"votingAuthority/{v}") for v in ("Sole", "Shared", "None")] == ["0", "0", "7"]
    assert field(dusd, "value") == "8911" and field(dusd, "shrsOrPrnAmt/sshPrnamt") == "8911"
    assert field(opt, "figi") == "BBG000BLNNH6" and field(opt, "putCall") == "Call"
    assert field(opt, "otherManager") == "1,3" and field(opt, "votingAuthority/Sole") == "2"
    assert table_value_total([ETH, DUSD]) == 21000 + 8911


def test_the_document_says_it_is_not_submitted_and_what_it_holds() -> None:
    xml = information_table([ETH, replace(DUSD, usd_per_unit=None)], period=PERIOD, notes=["session 7"])
    text = xml.decode()
    prolog, body = text.split("<informationTable", 1)
    assert NOT_SUBMITTED in prolog and "<!--" in prolog  # a comment ahead of the root element
    assert "as of 2025-03-31" in prolog
    assert f"cusip {PLACEHOLDER_CUSIP} is a placeholder" in prolog
    assert "row 1: 7000000000000000000 base units, 18 decimals = 7 units" in prolog
    assert "at 3000 USD per unit: value 21000 USD (pool reserves)" in prolog
    assert "row 2: " in prolog and "UNPRICED (no price known): value 0" in prolog
    assert "session 7" in prolog and "<!--" not in body
    assert field(rows(xml)[1], "value") == "0"


def test_same_input_same_bytes() -> None:
    def make() -> bytes:
        return information_table(
            [replace(ETH), replace(DUSD, usd_per_unit=Decimal("1.00"))], period=date(2025, 3, 31), notes=["n"]
        )

    first = make()
    assert make() == first
    assert information_table([ETH, replace(DUSD, usd_per_unit=1)], period=PERIOD, notes=["n"]) == first
    # ... and any difference in the content is a difference in the bytes
    assert information_table([ETH, DUSD], period=date(2025, 6, 30), notes=["n"]) != first
    assert information_table([DUSD, ETH], period=PERIOD, notes=["n"]) != first


@pytest.mark.parametrize(
    ("amount", "decimals", "price", "value", "units"),
    [
        (5 * 10**17, 18, Fraction(1), 1, 1),  # 0.5 -> 1: halves round up
        (4999 * 10**14, 18, Fraction(1), 0, 0),  # 0.4999 -> 0
        (15 * 10**17, 18, Fraction(1), 2, 2),  # 1.5 -> 2
        (25 * 10**17, 18, Fraction(1), 3, 3),  # 2.5 -> 3 (half up, not to even)
        (E18, 18, Fraction(1000, 3), 333, 1),  # 333.33.. -> 333, exactly
        (2 * E18, 18, Fraction(1000, 3), 667, 2),  # 666.66.. -> 667
        (1, 0, Decimal("0.5"), 1, 1),
        (123_456_789, 6, Decimal("2999.995"), 370_370, 123),  # 123.456789 x 2999.995 = 370369.75...
        (10**40, 18, Fraction(3000), 3 * 10**25, 10**22),  # far beyond float precision, still exact
        (0, 18, Fraction(3000), 0, 0),
    ],
)
def test_rounding_is_exact_and_half_up(
    amount: int, decimals: int, price: Fraction | Decimal, value: int, units: int
) -> None:
    h = replace(ETH, amount=amount, decimals=decimals, usd_per_unit=price)
    assert (h.value_usd, h.units) == (value, units)
    row = rows(information_table([h], period=PERIOD))[0]
    assert (field(row, "value"), field(row, "shrsOrPrnAmt/sshPrnamt")) == (str(value), str(units))


def test_rounding_and_exact_decimals() -> None:
    assert [round_half_up(Fraction(n, 2)) for n in range(6)] == [0, 1, 1, 2, 2, 3]
    with pytest.raises(ValueError):
        round_half_up(Fraction(-1, 2))
    assert exact_decimal(Fraction(3000)) == "3000"
    assert exact_decimal(Fraction(1, 4)) == "0.25"
    assert exact_decimal(Fraction(2999995, 1000)) == "2999.995"
    assert exact_decimal(Fraction(1000, 3)) == "1000/3"


@pytest.mark.parametrize(
    ("changes", "field_name", "says"),
    [
        ({"cusip": "12345678"}, "holdings[0].cusip", "9 letters or digits"),
        ({"cusip": "1234567890"}, "holdings[0].cusip", "9 letters or digits"),
        ({"cusip": "12345-789"}, "holdings[0].cusip", "9 letters or digits"),
        ({"figi": "BBG000"}, "holdings[0].figi", "12 letters or digits"),
        ({"name_of_issuer": ""}, "holdings[0].name_of_issuer", "required"),
        ({"name_of_issuer": "x" * 201}, "holdings[0].name_of_issuer", "at most 200"),
        ({"title_of_class": "x" * 151}, "holdings[0].title_of_class", "at most 150"),
        ({"name_of_issuer": "bad\x00name"}, "holdings[0].name_of_issuer", "control characters"),
        ({"title_of_class": "two\nlines"}, "holdings[0].title_of_class", "control characters"),
        ({"amount": -1}, "holdings[0].amount", "never negative"),
        ({"amount": 7.0}, "holdings[0].amount", "whole number"),
        ({"amount": True}, "holdings[0].amount", "whole number"),
        ({"decimals": -1}, "holdings[0].decimals", "never negative"),
        ({"decimals": 78}, "holdings[0].decimals", "at most 77"),
        ({"usd_per_unit": 3000.0}, "holdings[0].usd_per_unit", "never a float"),
        ({"usd_per_unit": Fraction(-1)}, "holdings[0].usd_per_unit", "never negative"),
        ({"usd_per_unit": Decimal("NaN")}, "holdings[0].usd_per_unit", "not a finite number"),
        ({"shares_type": "sh"}, "holdings[0].shares_type", "SH, PRN"),
        ({"put_call": "CALL"}, "holdings[0].put_call", "Put, Call"),
        ({"investment_discretion": "SHARED"}, "holdings[0].investment_discretion", "SOLE, DFND, OTR"),
        (
            {"other_manager": "0x5FbDB2315678afecb367f032d93F642f64180aa3"},
            "holdings[0].other_manager",
            "sequence",
        ),
        ({"voting_sole": -2}, "holdings[0].voting_sole", "never negative"),
        ({"voting_none": 1.5}, "holdings[0].voting_none", "whole number"),
        ({"price_source": "a -- b"}, "holdings[0].price_source", "XML comment"),
    ],
)
def test_bad_holdings_are_refused_naming_the_field(
    changes: dict[str, Any], field_name: str, says: str
) -> None:
    with pytest.raises(InvalidArgument) as err:
        information_table([replace(ETH, **changes)], period=PERIOD)
    assert err.value.field == field_name and says in err.value.message, err.value.message


def test_bad_tables_are_refused() -> None:
    with pytest.raises(InvalidArgument, match=r"^holdings: at least one"):
        information_table([], period=PERIOD)
    with pytest.raises(InvalidArgument, match=r"^holdings\[1\]\.cusip"):
        information_table([ETH, replace(DUSD, cusip="")], period=PERIOD)
    with pytest.raises(InvalidArgument, match=r"^holdings\[0\]: dict"):
        information_table([{"name_of_issuer": "x"}], period=PERIOD)  # type: ignore[list-item]
    with pytest.raises(InvalidArgument, match=r"^period: .*no time"):
        information_table([ETH], period=datetime(2025, 3, 31, 12, 0))
    with pytest.raises(InvalidArgument, match=r"^period"):
        information_table([ETH], period="2025-03-31")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match=r"^notes\[1\]: .*XML comment"):
        information_table([ETH], period=PERIOD, notes=["fine", "ends with -"])
    with pytest.raises(InvalidArgument, match=r"^notes\[0\]: required"):
        information_table([ETH], period=PERIOD, notes=[" "])


WETH, STABLE = "0x" + "aa" * 20, "0x" + "bb" * 20


@pytest.mark.parametrize(
    ("analysed", "decimals", "price", "source"),
    [
        # the pool's reserves, exactly (WETH as token0 or token1; the stablecoin's decimals applied)
        (
            {"token0": WETH, "token1": STABLE, "reserve0": "3", "reserve1": "10000", "block": 9},
            18,
            Fraction(10000, 3),
            "reserves",
        ),
        (
            {"token0": STABLE, "token1": WETH, "reserve0": str(3000 * 10**6 * 50), "reserve1": str(50 * E18)},
            6,
            Fraction(3000),
            "reserves",
        ),
        # a pool of other tokens: its reserves say nothing of this stablecoin; the rounded price stands in
        (
            {"token0": WETH, "token1": "0x" + "cc" * 20, "reserve0": "1", "reserve1": "2", "price": 2999.5},
            18,
            Fraction(5999, 2),
            "rounded to 6",
        ),
        ({"price": 3000.0}, 18, Fraction(3000), "rounded to 6"),
        ({"price": float("nan")}, 18, None, ""),
        ({"price": True}, 18, None, ""),
        (None, 18, None, ""),  # analyze_market never ran: unpriced
        ([{"price": 1.0}, {"price": 2.0}], 18, None, ""),
    ],
)
def test_the_executor_prices_eth_from_the_session_memory(
    analysed: Any, decimals: int, price: Fraction | None, source: str
) -> None:
    got, said = _eth_price(
        analysed, {"weth": WETH.upper().replace("0X", "0x"), "stable": STABLE}, "dUSD", decimals
    )
    assert got == price and source in said
    if price is not None:
        assert "1 dUSD taken as 1 USD" in said
