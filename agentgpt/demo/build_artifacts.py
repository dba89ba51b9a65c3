"""Compile contracts/demo/*.sol with the pinned solc-js into agentgpt/demo/artifacts/ (committed).

    python -m agentgpt.demo.build_artifacts [--check]

Same compiler and settings as scripts/build_contracts.py (whose contracts/*.sol glob does not include
contracts/demo/), so the demo's contracts never mix with the product's artifacts.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ROOT / "contracts" / "demo"
OUT = Path(__file__).resolve().parent / "artifacts"
SETTINGS: dict[str, Any] = {
    "optimizer": {"enabled": True, "runs": 200},
    "evmVersion": "cancun",
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}},
}
_NODE = r"""
const fs = require('fs'); const path = require('path'); const solc = require('solc');
const root = process.cwd();
function findImports(p) {
  for (const base of [root, path.join(root, 'node_modules')]) {
    const full = path.join(base, p);
    if (fs.existsSync(full)) return { contents: fs.readFileSync(full, 'utf8') };
  }
  return { error: 'not found: ' + p };
}
const out = JSON.parse(solc.compile(fs.readFileSync(0, 'utf8'), { import: findImports }));
process.stdout.write(JSON.stringify({ version: solc.version(), output: out }));
"""


def compile_demo() -> dict[str, str]:
    node = shutil.which("node")
    if node is None:
        raise SystemExit("node is not on PATH")
    sources = {f"contracts/demo/{p.name}": {"content": p.read_text()} for p in sorted(SOURCES.glob("*.sol"))}
    proc = subprocess.run(
        [node, "-e", _NODE],
        input=json.dumps({"language": "Solidity", "sources": sources, "settings": SETTINGS}),
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    result = json.loads(proc.stdout)
    errors = [e for e in result["output"].get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise SystemExit("\n".join(e["formattedMessage"] for e in errors))
    out = {}
    for source in sources:
        for name, c in result["output"]["contracts"][source].items():
            if c["evm"]["bytecode"]["object"]:
                out[name] = (
                    json.dumps(
                        {
                            "contractName": name,
                            "sourceName": source,
                            "abi": c["abi"],
                            "bytecode": "0x" + c["evm"]["bytecode"]["object"],
                            "compiler": {"version": result["version"], "settings": SETTINGS},
                        },
                        indent=2,
                        sort_keys=True,
                    )
                    + "\n"
                )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed artifact is stale")
    args = parser.parse_args(argv)
    artifacts = compile_demo()
    stale = [
        n
        for n, text in artifacts.items()
        if not (OUT / f"{n}.json").is_file() or (OUT / f"{n}.json").read_text() != text
    ]
    if args.check:
        for n in stale:
            print(f"stale demo artifact: {n}", file=sys.stderr)
        return 1 if stale else 0
    OUT.mkdir(parents=True, exist_ok=True)
    for n, text in artifacts.items():
        (OUT / f"{n}.json").write_text(text)
        print(f"wrote {OUT / f'{n}.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
