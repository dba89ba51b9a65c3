"""Regulatory documents built from a session's records, for its audit trail (none is ever submitted).

from agentgpt.filing import Holding, information_table   # Form 13F information table (EDGAR XML)
"""

from __future__ import annotations

from agentgpt.filing.form13f import (
    CONTENT_TYPE,
    FORM,
    KIND,
    NAMESPACE,
    NOT_SUBMITTED,
    PLACEHOLDER_CUSIP,
    Holding,
    exact_decimal,
    information_table,
    round_half_up,
    table_value_total,
)

__all__ = [
    "CONTENT_TYPE",
    "FORM",
    "KIND",
    "NAMESPACE",
    "NOT_SUBMITTED",
    "PLACEHOLDER_CUSIP",
    "Holding",
    "exact_decimal",
    "information_table",
    "round_half_up",
    "table_value_total",
]
