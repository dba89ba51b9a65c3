"""The coverage summary `make test` prints after the suite: line and branch coverage per package, the
packages below FLAG_BELOW flagged (not failed), the HTML and XML reports written under .agentgpt/coverage,
and 100% line and branch coverage enforced for the owner-authenticated relay path (`STRICT`): the
script exits 1 when one of those files has a line or a branch no test runs.

Coverage is of the in-process tests: the services the end-to-end tests start as subprocesses are not
measured. Reads the data pytest-cov wrote ([tool.coverage.*] in pyproject.toml).

    python scripts/coverage_report.py [--data-file .agentgpt/coverage/.coverage]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import coverage

ROOT = Path(__file__).resolve().parent.parent
#: Every line and every branch of these runs under the tests.
STRICT = ("services/session/control/relay.py", "agentgpt/auth.py", "agentgpt/owner.py")
FLAG_BELOW = 85.0


def _pct(hit: int, total: int) -> float:
    return 100.0 * hit / total if total else 100.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-file", default=str(ROOT / ".agentgpt/coverage/.coverage"))
    parser.add_argument("--no-html", action="store_true", help="skip the HTML and XML reports")
    parser.add_argument(
        "--no-strict", action="store_true", help="print what STRICT misses but do not fail (a partial run)"
    )
    parser.add_argument(
        "--strict-only",
        action="store_true",
        help="check only the STRICT files (the data is of their tests alone: per-package figures would mislead)",
    )
    args = parser.parse_args(argv)
    if not Path(args.data_file).exists():
        print(f"coverage: no data at {args.data_file} (run the tests with --cov first)", file=sys.stderr)
        return 1
    cov = coverage.Coverage(data_file=args.data_file, config_file=str(ROOT / "pyproject.toml"))
    cov.load()
    data = cov.get_data()
    # package (directory) -> [statements, missed statements, branches, missed branches]
    packages: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    strict: dict[str, tuple[list[int], list[tuple[int, int]]]] = {}
    for measured in sorted(data.measured_files()):
        rel = Path(measured).resolve().relative_to(ROOT).as_posix()
        analysis = cov._analyze(measured)  # the public report API gives no per-file numbers
        numbers = analysis.numbers
        row = packages[str(Path(rel).parent).replace("/", ".")]
        row[0] += numbers.n_statements
        row[1] += numbers.n_missing
        row[2] += numbers.n_branches
        row[3] += numbers.n_missing_branches
        if rel in STRICT:
            arcs = [(line, to) for line, tos in analysis.missing_branch_arcs().items() for to in tos]
            strict[rel] = (sorted(analysis.missing), sorted(arcs))
    if args.strict_only:
        packages.clear()
        args.no_html = True
    width = max((len(p) for p in packages), default=0)
    if packages:
        print(f"\n{'package':<{width}}  {'lines':>7}  {'branches':>8}")
    total = [0, 0, 0, 0]
    for name, (stmts, miss, branches, miss_br) in sorted(packages.items()):
        lines, br = _pct(stmts - miss, stmts), _pct(branches - miss_br, branches)
        flag = f"  < {FLAG_BELOW:g}%" if min(lines, br) < FLAG_BELOW else ""
        print(f"{name:<{width}}  {lines:6.1f}%  {br:7.1f}%{flag}")
        total = [t + n for t, n in zip(total, (stmts, miss, branches, miss_br), strict=True)]
    lines, br = _pct(total[0] - total[1], total[0]), _pct(total[2] - total[3], total[2])
    if packages:
        print(f"{'total':<{width}}  {lines:6.1f}%  {br:7.1f}%")
    if not args.no_html:
        cov.html_report()
        cov.xml_report()
        print(f"\nreports: {cov.config.html_dir}/index.html, {cov.config.xml_output}")
    failed = False
    for rel in STRICT:
        if rel not in strict:
            print(f"coverage: {rel} was not measured at all (no test imported it)", file=sys.stderr)
            failed = True
            continue
        missing, arcs = strict[rel]
        if missing or arcs:
            print(
                f"coverage: {rel} must be fully covered; lines not run: {missing or 'none'}; "
                f"branches not taken: {', '.join(f'{a}->{b}' for a, b in arcs) or 'none'}",
                file=sys.stderr,
            )
            failed = True
    if not failed:
        print(f"100% line and branch coverage: {', '.join(STRICT)}")
    return 1 if failed and not args.no_strict else 0


if __name__ == "__main__":
    sys.exit(main())
