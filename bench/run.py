"""Runs the benchmarks (`make bench`): each bench/*.py script --repeat times, then one JSON report and a table.

    .venv/bin/python bench/run.py [--repeat 3] [--only NAME ...] [--skip NAME ...] [--out PATH]

Every figure is a ratio against a baseline measured in the same run of its script; the report gives the
value, the baseline and the ratio as min / median / max over the repeated runs, so noise is visible. Each
run is a fresh process (`python bench/<name>.py --json <file> <args>`): nothing is shared between runs,
and the scripts stay runnable on their own. Their own text goes to <report dir>/logs/<name>-<i>.log.

Adding a benchmark (e.g. bench/zk_proving.py):

1. measure in a function that returns {figure name: benchkit.Figure} (value, unit, and the baseline
   measured in the same run, so the Figure carries the ratio; `goal` and `better` if there is a goal);
2. give the script's argparse `benchkit.add_json_option(parser)` and, once measured,
   `benchkit.write_json(args.json, figures)`; keep printing readable text for standalone runs;
3. that's all: the runner picks up every bench/*.py except itself and benchkit.py. If the script's
   defaults are too slow for `make bench`, put the arguments the runner passes in RUNNER_ARGS below,
   and a longer limit than DEFAULT_TIMEOUT in TIMEOUTS.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchkit

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
NOT_BENCHMARKS = {"run", "benchkit"}
DEFAULT_OUT = ROOT / ".agentgpt" / "bench" / "report.json"
DEFAULT_TIMEOUT = 900.0  # seconds per run of one script
#: Arguments the runner passes to a script instead of its standalone defaults (kept shorter for --repeat).
RUNNER_ARGS: dict[str, list[str]] = {
    "recovery": ["--kills", "5", "--handoffs", "3"],
    "executor_tasks": ["--checkpoint-cost", "15"],
    "ipfs_checkpoint": ["--n", "100"],
    "zk_prover": ["--runs", "2"],
}
TIMEOUTS: dict[str, float] = {"recovery": 1800.0, "memory": 1200.0}
#: At most this many runs of a script whatever --repeat says (it measures 3 sizes in one run, and each
#: size already has its own baseline; 10,000 sessions take minutes).
MAX_REPEATS: dict[str, int] = {"memory": 1}


def discover() -> list[str]:
    return sorted(
        p.stem for p in BENCH.glob("*.py") if p.stem not in NOT_BENCHMARKS and not p.stem.startswith("_")
    )


def run_once(name: str, extra: list[str], log: Path) -> tuple[dict[str, Any], str]:
    """One run of bench/<name>.py: its figures, and why the run failed ("" when it did not). A script
    that wrote figures but exited non-zero (a check of its own failed) keeps its figures."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    cmd = [sys.executable, str(BENCH / f"{name}.py"), "--json", str(out), *RUNNER_ARGS.get(name, []), *extra]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    try:
        with log.open("w") as sink:
            proc = subprocess.run(
                cmd,
                cwd=ROOT,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                timeout=TIMEOUTS.get(name, DEFAULT_TIMEOUT),
                check=False,
            )
        text = out.read_text() if out.exists() else ""
        figures = dict(json.loads(text)["figures"]) if text else {}
        if not figures:
            tail = log.read_text().strip().splitlines()[-1:] or [""]
            return {}, f"exit {proc.returncode}, no figures ({tail[0][:200]}); see {log}"
        if proc.returncode != 0:
            return figures, f"exit {proc.returncode} (a check of the benchmark failed); see {log}"
        return figures, ""
    except subprocess.TimeoutExpired:
        return {}, f"timed out; see {log}"
    finally:
        out.unlink(missing_ok=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each benchmark (default 3)")
    parser.add_argument(
        "--only", nargs="+", default=[], metavar="NAME", help="run only these (bench/NAME.py)"
    )
    parser.add_argument("--skip", nargs="+", default=[], metavar="NAME", help="leave these out")
    parser.add_argument(
        "--out", default=str(DEFAULT_OUT), help=f"the report (default {DEFAULT_OUT.relative_to(ROOT)})"
    )
    parser.add_argument(
        "--args",
        action="append",
        default=[],
        metavar="NAME=ARGS",
        help="extra arguments for one script, e.g. session_api='--duration 1'",
    )
    args = parser.parse_args()
    names = [n for n in (args.only or discover()) if n not in args.skip]
    unknown = sorted(set(names) - set(discover()))
    if unknown:
        parser.error(f"no such benchmark: {', '.join(unknown)} (have: {', '.join(discover())})")
    extra = {k: v.split() for k, _, v in (a.partition("=") for a in args.args)}
    out = Path(args.out)
    logs = out.parent / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "repeat": args.repeat,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "benchmarks": {},
    }
    failed = False
    for name in names:
        runs: list[dict[str, Any]] = []
        error = ""
        t0 = time.monotonic()
        repeat = min(args.repeat, MAX_REPEATS.get(name, args.repeat))
        for i in range(repeat):
            print(f"== {name} ({i + 1}/{repeat})", file=sys.stderr, flush=True)
            figures, error = run_once(name, extra.get(name, []), logs / f"{name}-{i + 1}.log")
            if figures:
                runs.append(figures)
            if error:
                print(f"   {name}: {error}", file=sys.stderr, flush=True)
                break
        entry: dict[str, Any] = {
            "args": RUNNER_ARGS.get(name, []) + extra.get(name, []),
            "seconds": round(time.monotonic() - t0, 1),
            "figures": benchkit.aggregate(runs),
        }
        if error:
            entry["error"] = error
            failed = True
        report["benchmarks"][name] = entry
        out.write_text(json.dumps(report, indent=1))  # written after each benchmark: a crash keeps the rest
    report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out.write_text(json.dumps(report, indent=1))
    print(benchkit.table(report))
    print(f"\nreport: {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
