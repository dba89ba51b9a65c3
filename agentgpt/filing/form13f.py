"""A Form 13F information table in EDGAR's XML structure, built from a treasury's holdings.

The treasury workflow's `publish_report` keeps one of these next to its JSON report (docs/design.md §6):
the same holdings, laid out as the SEC's 13F-HR information table, so the audit trail holds the
document a filing would carry. It is GENERATED FOR THE AUDIT TRAIL AND NOT SUBMITTED to EDGAR or
anywhere else; the document says so itself, in an XML comment ahead of the root element.

Which specification. The element structure is that of the Form 13F XML Technical Specification as
revised for filings made from January 3, 2023 (the SEC's 2022 amendments to Form 13F): `value` is in
whole US dollars, no longer thousands, and an optional `figi` follows the CUSIP. The specification's
version number is not recorded here because it could not be checked against the SEC's document; the
revision is named by its effective date instead. The column rules were checked against the SEC's
filer guide "Create an XML Information Table for Form 13F Using Excel" (June 4, 2024: 13 columns, FIGI
included). This module does not ship the XSD or validate against it; it enforces these rules itself:

- namespace `http://www.sec.gov/edgar/document/thirteenf/informationtable`, root `informationTable`,
  one `infoTable` per holding (at least one: a manager with no holdings files a 13F-NT, not a table);
- within `infoTable`, in this order: `nameOfIssuer` (1-200 characters), `titleOfClass` (1-150),
  `cusip` (exactly 9 letters or digits), `figi` (optional, exactly 12 letters or digits), `value`,
  `shrsOrPrnAmt/{sshPrnamt, sshPrnamtType}` (`SH` or `PRN`), `putCall` (optional, `Put` or `Call`),
  `investmentDiscretion` (`SOLE`, `DFND` or `OTR`), `otherManager` (optional, the sequence numbers of
  other included managers, comma-separated, at most 100 characters) and
  `votingAuthority/{Sole, Shared, None}`;
- every number a non-negative whole number: `value` is the holding's USD value rounded to the nearest
  dollar (half up), `sshPrnamt` the holding in whole units rounded the same way.

Crypto assets. ETH and ERC-20 tokens are not Section 13(f) securities and have no CUSIP. They are
reported with the placeholder CUSIP `000000000` (PLACEHOLDER_CUSIP: valid in form, assigned to nothing),
what they are in `nameOfIssuer`/`titleOfClass` (the caller names the chain and the token's address
there), `SH` counting whole coins or tokens, and no `otherManager` (that column is for manager
numbers, not addresses). The comment ahead of the table repeats this for every row, with the exact
amount in base units, the price used and where it came from, so nothing in the table passes for more
than it is. A holding without a price is reported with value 0 and marked UNPRICED in that comment.

Arithmetic is exact: amounts are integers in base units (wei), prices are Fractions (or Decimals or
ints, converted exactly), and no float is accepted anywhere. The output is canonical: the same
holdings, period and notes give the same bytes (UTF-8, fixed element order, two-space indentation, no
timestamp but the report period passed in), so its CID is a function of its content.

    xml = information_table([Holding("ETHER", "NATIVE COIN", amount=7 * 10**18, decimals=18,
                                     usd_per_unit=Fraction(3000))], period=date(2025, 3, 31))
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Final

from agentgpt.errors import InvalidArgument

NAMESPACE: Final = "http://www.sec.gov/edgar/document/thirteenf/informationtable"
FORM: Final = "13F-HR information table"
KIND: Final = "filing"  # what an archived copy is tagged with (`Kind: filing`), next to CONTENT_TYPE
CONTENT_TYPE: Final = "application/xml"
PLACEHOLDER_CUSIP: Final = "000000000"
NOT_SUBMITTED: Final = "GENERATED FOR THE AUDIT TRAIL. NOT SUBMITTED TO EDGAR OR ANYWHERE ELSE."

SHARES_TYPES: Final = ("SH", "PRN")
PUT_CALL: Final = ("Put", "Call")
INVESTMENT_DISCRETION: Final = ("SOLE", "DFND", "OTR")

_CUSIP = re.compile(r"[A-Za-z0-9]{9}")
_FIGI = re.compile(r"[A-Za-z0-9]{12}")
_OTHER_MANAGER = re.compile(r"[1-9][0-9]*(,[1-9][0-9]*)*")
# What XML 1.0 cannot carry (C0 controls but tab, newline, CR; surrogates; U+FFFE, U+FFFF), and what
# this table does not want in a field even where XML could: tab, newline, CR.
_NOT_TEXT = re.compile("[\x00-\x1f\ud800-\udfff\ufffe\uffff]")


@dataclass(frozen=True)
class Holding:
    """One row of the table: `amount` base units of an asset with `decimals` decimals (10**decimals base
    units make one whole unit), worth `usd_per_unit` US dollars per whole unit (None: no price known).

    `voting_none` None means the whole position (whole units) carries no voting authority, which is the
    case for coins and tokens."""

    name_of_issuer: str
    title_of_class: str
    amount: int
    decimals: int
    usd_per_unit: Fraction | Decimal | int | None
    cusip: str = PLACEHOLDER_CUSIP
    figi: str | None = None
    shares_type: str = "SH"
    put_call: str | None = None
    investment_discretion: str = "SOLE"
    other_manager: str | None = None
    voting_sole: int = 0
    voting_shared: int = 0
    voting_none: int | None = None
    price_source: str = ""  # where usd_per_unit came from, for the comment ahead of the table

    @property
    def price(self) -> Fraction | None:
        """usd_per_unit as an exact Fraction (Decimal and int convert without rounding)."""
        return None if self.usd_per_unit is None else Fraction(self.usd_per_unit)

    @property
    def units(self) -> int:
        """The position in whole units, rounded to the nearest unit (half up): `sshPrnamt`."""
        return round_half_up(Fraction(self.amount, 10**self.decimals))

    @property
    def value_usd(self) -> int:
        """The position's value in whole US dollars, rounded to the nearest dollar (half up): `value`.
        0 when there is no price."""
        price = self.price
        return 0 if price is None else round_half_up(Fraction(self.amount, 10**self.decimals) * price)

    def validate(self, where: str) -> None:
        """Raise InvalidArgument naming `where.field` for the first rule this row breaks."""
        _text(f"{where}.name_of_issuer", self.name_of_issuer, 200)
        _text(f"{where}.title_of_class", self.title_of_class, 150)
        _pattern(f"{where}.cusip", self.cusip, _CUSIP, "9 letters or digits (a CUSIP)")
        if self.figi is not None:
            _pattern(f"{where}.figi", self.figi, _FIGI, "12 letters or digits (a FIGI), or None")
        _count(f"{where}.amount", self.amount)
        _count(f"{where}.decimals", self.decimals)
        if self.decimals > 77:  # 10**77 base units exceed any uint256 balance: not a real token
            raise InvalidArgument(f"{where}.decimals", f"{self.decimals} decimals: at most 77")
        price = self.usd_per_unit
        if price is not None:
            if isinstance(price, bool) or not isinstance(price, Fraction | Decimal | int):
                raise InvalidArgument(
                    f"{where}.usd_per_unit",
                    f"{type(price).__name__} {price!r}: pass a Fraction, Decimal or int (never a float)",
                )
            if isinstance(price, Decimal) and not price.is_finite():
                raise InvalidArgument(f"{where}.usd_per_unit", f"{price}: not a finite number")
            if price < 0:
                raise InvalidArgument(f"{where}.usd_per_unit", f"{price}: a price is never negative")
        _choice(f"{where}.shares_type", self.shares_type, SHARES_TYPES)
        if self.put_call is not None:
            _choice(f"{where}.put_call", self.put_call, PUT_CALL)
        _choice(f"{where}.investment_discretion", self.investment_discretion, INVESTMENT_DISCRETION)
        if self.other_manager is not None:
            _pattern(
                f"{where}.other_manager",
                self.other_manager,
                _OTHER_MANAGER,
                "the other managers' sequence numbers, comma-separated (e.g. '1,3'), or None",
            )
            if len(self.other_manager) > 100:
                raise InvalidArgument(f"{where}.other_manager", "at most 100 characters")
        _count(f"{where}.voting_sole", self.voting_sole)
        _count(f"{where}.voting_shared", self.voting_shared)
        if self.voting_none is not None:
            _count(f"{where}.voting_none", self.voting_none)
        _comment_text(f"{where}.price_source", self.price_source)


def information_table(holdings: Sequence[Holding], *, period: date, notes: Sequence[str] = ()) -> bytes:
    """The 13F information table of `holdings` (in the order given) as of `period`, as canonical UTF-8
    XML bytes. `notes` are extra lines for the comment ahead of the table (where the holdings were read,
    for example); like every field they may not hold control characters, nor "--" (XML comments cannot).

    Raises InvalidArgument, naming the field (`holdings[1].cusip`, `period`, `notes[0]`), for input the
    table cannot carry."""
    if isinstance(period, datetime) or not isinstance(period, date):
        raise InvalidArgument("period", f"{period!r}: pass a datetime.date (the report's as-of day), no time")
    if not holdings:
        raise InvalidArgument("holdings", "at least one holding: an empty report is a 13F-NT, not a table")
    for i, h in enumerate(holdings):
        if not isinstance(h, Holding):
            raise InvalidArgument(f"holdings[{i}]", f"{type(h).__name__}: pass Holding rows")
        h.validate(f"holdings[{i}]")
    for i, note in enumerate(notes):
        _comment_text(f"notes[{i}]", note, required=True)

    root = ET.Element(_q("informationTable"))
    for h in holdings:
        row = ET.SubElement(root, _q("infoTable"))
        _leaf(row, "nameOfIssuer", h.name_of_issuer)
        _leaf(row, "titleOfClass", h.title_of_class)
        _leaf(row, "cusip", h.cusip)
        if h.figi is not None:
            _leaf(row, "figi", h.figi)
        _leaf(row, "value", str(h.value_usd))
        amount = ET.SubElement(row, _q("shrsOrPrnAmt"))
        _leaf(amount, "sshPrnamt", str(h.units))
        _leaf(amount, "sshPrnamtType", h.shares_type)
        if h.put_call is not None:
            _leaf(row, "putCall", h.put_call)
        _leaf(row, "investmentDiscretion", h.investment_discretion)
        if h.other_manager is not None:
            _leaf(row, "otherManager", h.other_manager)
        voting = ET.SubElement(row, _q("votingAuthority"))
        _leaf(voting, "Sole", str(h.voting_sole))
        _leaf(voting, "Shared", str(h.voting_shared))
        _leaf(voting, "None", str(h.units if h.voting_none is None else h.voting_none))
    ET.indent(root, space="  ")
    body = ET.tostring(root, encoding="unicode", default_namespace=NAMESPACE)
    comment = "\n".join(f"  {line}" for line in _comment_lines(holdings, period, notes))
    text = f'<?xml version="1.0" encoding="UTF-8"?>\n<!--\n{comment}\n-->\n{body}\n'
    return text.encode("utf-8")


def table_value_total(holdings: Sequence[Holding]) -> int:
    """The sum of the rows' `value` (the cover's tableValueTotal), in whole US dollars."""
    return sum(h.value_usd for h in holdings)


def round_half_up(q: Fraction) -> int:
    """The whole number nearest a non-negative `q`, halves rounded up (2.5 -> 3)."""
    if q < 0:
        raise ValueError(f"round_half_up takes a non-negative number, not {q}")
    return (2 * q.numerator + q.denominator) // (2 * q.denominator)


def exact_decimal(q: Fraction) -> str:
    """`q` written exactly: as a decimal when it has a finite one ("3000", "0.25"), otherwise as
    numerator/denominator ("1000/3")."""
    for places in range(0, 40):
        scaled = q * 10**places
        if scaled.denominator == 1:
            digits = str(abs(scaled.numerator)).rjust(places + 1, "0")
            whole, frac = digits[: len(digits) - places], digits[len(digits) - places :]
            return ("-" if q < 0 else "") + whole + (f".{frac}" if frac else "")
    return f"{q.numerator}/{q.denominator}"


def _comment_lines(holdings: Sequence[Holding], period: date, notes: Sequence[str]) -> list[str]:
    lines = [
        NOT_SUBMITTED,
        f"Form {FORM} as of {period.isoformat()} (report period), values in whole US dollars.",
    ]
    if any(h.cusip == PLACEHOLDER_CUSIP for h in holdings):
        lines.append(
            f"cusip {PLACEHOLDER_CUSIP} is a placeholder, not an assigned CUSIP: crypto assets are not "
            "Section 13(f) securities and have none."
        )
    for i, h in enumerate(holdings, start=1):
        price = h.price
        worth = (
            "UNPRICED (no price known): value 0"
            if price is None
            else f"at {exact_decimal(price)} USD per unit: value {h.value_usd} USD"
        )
        source = f" ({h.price_source})" if h.price_source and price is not None else ""
        lines.append(
            f"row {i}: {h.amount} base units, {h.decimals} decimals = {h.units} units (rounded), "
            f"{worth}{source}."
        )
    lines.extend(notes)
    return lines


def _q(tag: str) -> str:
    return f"{{{NAMESPACE}}}{tag}"


def _leaf(parent: ET.Element, tag: str, text: str) -> None:
    ET.SubElement(parent, _q(tag)).text = text


def _text(field: str, value: object, limit: int) -> None:
    if not isinstance(value, str):
        raise InvalidArgument(field, f"{type(value).__name__}: pass text")
    if not value.strip():
        raise InvalidArgument(field, "required (empty)")
    if len(value) > limit:
        raise InvalidArgument(field, f"{len(value)} characters: at most {limit}")
    if bad := _NOT_TEXT.search(value):
        raise InvalidArgument(field, f"holds {bad.group()!r}: control characters and surrogates are refused")


def _comment_text(field: str, value: object, *, required: bool = False) -> None:
    if not isinstance(value, str):
        raise InvalidArgument(field, f"{type(value).__name__}: pass text")
    if required and not value.strip():
        raise InvalidArgument(field, "required (empty)")
    if bad := _NOT_TEXT.search(value):
        raise InvalidArgument(field, f"holds {bad.group()!r}: control characters and surrogates are refused")
    if "--" in value or value.endswith("-"):
        raise InvalidArgument(field, 'holds "--" or ends with "-", which an XML comment cannot carry')


def _pattern(field: str, value: object, pattern: re.Pattern[str], what: str) -> None:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidArgument(field, f"{value!r}: must be {what}")


def _choice(field: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InvalidArgument(field, f"{value!r}: one of {', '.join(allowed)} (case matters)")


def _count(field: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(field, f"{type(value).__name__} {value!r}: pass a whole number (int)")
    if value < 0:
        raise InvalidArgument(field, f"{value}: never negative")
