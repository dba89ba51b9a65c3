"""Canonical JSON: the one place JSON is written for hashing, signing, content addressing or comparing
(docs/design.md §5).

Every variant here is part of a committed format (a hash on chain, a hash chain in SessionDB, a CID, a
request hash of an idempotent retry), so none may change: tests/unit/test_canonical.py pins each one to
fixed vectors written before they were gathered here. Each sorts object keys; they differ in escaping
and whitespace:

`canonical_json`        UTF-8, no whitespace. The workflow hash (SessionSpec.canonical, committed on
                        chain at activation), the session event hash chain and its IPFS archive, the
                        session service's records of relayed requests.
`canonical_json_ascii`  non-ASCII escaped as \\uXXXX, no whitespace. The indexer's stored event args
                        (what its fast decoder writes byte for byte) and the executor's published
                        reports (content-addressed: the CID is in the task result the log hashes).
`sorted_json`           non-ASCII escaped, json's default ", " and ": " separators. A task's
                        `result_json` as the executor reports it (part of ReportTask's request hash, so
                        a retry after an upgrade still matches) and a spec's `params_json` as the API
                        returns it.

`default` turns values JSON has no type for into something it has (e.g. `str`); without it they raise.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

_COMPACT = (",", ":")


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 text (non-ASCII characters as themselves)."""
    return json.dumps(value, sort_keys=True, separators=_COMPACT, ensure_ascii=False)


def canonical_json_ascii(value: Any, *, default: Callable[[Any], Any] | None = None) -> str:
    """Sorted keys, no whitespace, non-ASCII characters escaped (\\uXXXX): pure ASCII."""
    return json.dumps(value, sort_keys=True, separators=_COMPACT, default=default)


def sorted_json(value: Any, *, default: Callable[[Any], Any] | None = None) -> str:
    """Sorted keys, json's default separators (", ", ": "), non-ASCII characters escaped."""
    return json.dumps(value, sort_keys=True, default=default)
