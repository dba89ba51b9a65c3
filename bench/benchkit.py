"""What the benchmarks share: figures, timing, percentiles, their JSON output and the readable table.

A benchmark measures figures. Each figure is a value with its unit and, wherever one exists, the
baseline measured in the same run and their ratio (the machine is shared and noisy: compare ratios, not
absolute numbers). A figure may carry its goal: a bound on the ratio, which `better` says is a floor
("higher") or a ceiling ("lower").

A benchmark script keeps printing its own text when run alone; given `--json PATH` it also writes its
figures there as `{"figures": {name: figure}}` (`add_json_option` + `write_json`), which is what
bench/run.py collects over repeated runs into one report.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Figure:
    """One measured figure. `ratio` is value / baseline unless given (e.g. a duration against a floor)."""

    value: float
    unit: str
    baseline: float | None = None
    ratio: float | None = None
    goal: float | None = None  # a bound on the ratio (on the value when there is no ratio)
    better: str = "higher"  # "higher": the goal is a floor; "lower": a ceiling
    note: str = ""

    def __post_init__(self) -> None:
        if self.ratio is None and self.baseline:
            object.__setattr__(self, "ratio", self.value / self.baseline)
        if self.better not in ("higher", "lower"):
            raise ValueError(f"better must be 'higher' or 'lower', not {self.better!r}")

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None and v != ""}


def met(goal: float | None, better: str, x: float | None) -> bool | None:
    """Whether `x` meets `goal` (None: no goal, or nothing to judge)."""
    if goal is None or x is None or math.isnan(x):
        return None
    return x >= goal if better == "higher" else x <= goal


# ----------------------------------------------------------------------------------------- timing


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of `values`, nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


class Stopwatch:
    """`with Stopwatch() as w: ...` then `w.seconds`."""

    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *_: object) -> None:
        self.seconds = time.perf_counter() - self.start


def spread(values: Iterable[float]) -> dict[str, float]:
    """min / median / max of repeated measurements."""
    xs = [v for v in values if v is not None and not math.isnan(v)]
    if not xs:
        return {}
    return {"min": min(xs), "median": statistics.median(xs), "max": max(xs)}


# ----------------------------------------------------------------------------------------- output


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json",
        metavar="PATH",
        default="",
        help="also write the figures as JSON here (what bench/run.py reads)",
    )


def write_json(path: str, figures: Mapping[str, Figure], **extra: Any) -> None:
    """Write `figures` (and any `extra` context) where `--json` asked; nothing without it."""
    if not path:
        return
    body = {"figures": {name: f.as_dict() for name, f in figures.items()}, **extra}
    Path(path).write_text(json.dumps(body, indent=1, default=str))


def _fmt(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    a = abs(x)
    if a >= 1e5:
        return f"{x:,.0f}"
    if a >= 100:
        return f"{x:.0f}"
    if a >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def table(report: Mapping[str, Any]) -> str:
    """The report as text: one row per figure, its value and ratio as median [min..max] over the runs."""
    rows = [("benchmark / figure", "value (median)", "unit", "ratio median [min..max]", "goal")]
    for bench, entry in report["benchmarks"].items():
        if entry.get("error"):
            rows.append((f"{bench}: FAILED", entry["error"][:60], "", "", ""))
        for name, fig in entry["figures"].items():
            value = fig["value"].get("median")
            r = fig.get("ratio") or {}
            ratio = f"{_fmt(r.get('median'))} [{_fmt(r.get('min'))}..{_fmt(r.get('max'))}]" if r else "-"
            goal = ""
            if fig.get("goal") is not None:
                sign = ">=" if fig["better"] == "higher" else "<="
                verdict = {True: "met", False: "NOT met", None: ""}[fig.get("met")]
                goal = f"{sign} {_fmt(fig['goal'])} {verdict}".strip()
            rows.append((f"{bench} / {name}", _fmt(value), fig["unit"], ratio, goal))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = []
    for i, r in enumerate(rows):
        lines.append(
            "  ".join(
                (c.ljust(w) if j in (0, 2, 4) else c.rjust(w))
                for j, (c, w) in enumerate(zip(r, widths, strict=True))
            ).rstrip()
        )
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def aggregate(runs: Sequence[Mapping[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """Figures of repeated runs (each {name: figure dict}) -> {name: value/ratio spreads, goal, met}."""
    out: dict[str, Any] = {}
    for name in dict.fromkeys(n for run in runs for n in run):
        got = [run[name] for run in runs if name in run]
        first = got[-1]
        ratios = [g["ratio"] for g in got if g.get("ratio") is not None]
        entry: dict[str, Any] = {
            "unit": first["unit"],
            "value": spread(g["value"] for g in got),
            "better": first.get("better", "higher"),
        }
        baselines = [g["baseline"] for g in got if g.get("baseline") is not None]
        if baselines:
            entry["baseline"] = spread(baselines)
        if ratios:
            entry["ratio"] = spread(ratios)
        if first.get("goal") is not None:
            entry["goal"] = first["goal"]
            judged = entry.get("ratio") or entry["value"]
            entry["met"] = met(first["goal"], entry["better"], judged.get("median"))
        if first.get("note"):
            entry["note"] = first["note"]
        entry["runs"] = len(got)
        out[name] = entry
    return out


def session_service_env(tmp: Path, root: Path, ready: Path, log_level: str = "WARNING") -> dict[str, str]:
    """A session service on SQLite in `tmp`, with no chain and the embedded content store, trusting the
    service header on loopback: what the benchmarks that start one run it with."""
    return {
        "PYTHONPATH": str(root),
        "AGENTGPT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'sessions.db'}",
        "AGENTGPT_TRUST_SERVICE_HEADER": "true",
        "AGENTGPT_GRPC_PORT": "0",
        "AGENTGPT_METRICS_PORT": "-1",
        "AGENTGPT_READY_FILE": str(ready),
        "AGENTGPT_IPFS_API": "",
        "AGENTGPT_IPFS_EMBEDDED_DIR": str(tmp / "ipfs"),
        "AGENTGPT_NETWORK": "",
        "AGENTGPT_HEALTH_INTERVAL": "1.0",
        "AGENTGPT_LOG_LEVEL": log_level,
    }
