#!/usr/bin/env python3
"""Compile the Solidity sources with the pinned solc-js into committed JSON artifacts:

    contracts/*.sol       -> agentgpt/contracts/artifacts/<Name>.json   (the product)
    contracts/demo/*.sol  -> apps/demo/artifacts/<Name>.json            (the local demo's market)

Why solc-js through `node -e` and standard JSON rather than the `solcjs` CLI: the compiler version is
exactly the one in node_modules (package.json pins it), imports resolve through an explicit callback
(repo root, then node_modules) and the output carries ABI, bytecode and metadata in one pass.

Artifacts are committed so the services can deploy without Node. `--check` recompiles and exits 1 if
any committed artifact differs (sources, imported OpenZeppelin files, compiler version or settings).

    python scripts/build_contracts.py            # (re)write artifacts
    python scripts/build_contracts.py --check    # CI: fail when artifacts are stale
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# (sources, artifacts): each pair is its own compilation unit, so demo contracts never mix with the product's.
TARGETS = [
    (ROOT / "contracts", ROOT / "agentgpt" / "contracts" / "artifacts"),
    (ROOT / "contracts" / "demo", ROOT / "apps" / "demo" / "artifacts"),
]

SETTINGS: dict[str, Any] = {
    "optimizer": {"enabled": True, "runs": 200},
    "evmVersion": "cancun",
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
}

# Runs inside node from the repo root: standard-JSON in on stdin, {version, output, sources} out on stdout.
_NODE_COMPILE = r"""
const fs = require('fs');
const path = require('path');
const solc = require('solc');
const root = process.cwd();
const read = new Set();
function findImports(p) {
  for (const base of [root, path.join(root, 'node_modules')]) {
    const full = path.join(base, p);
    if (fs.existsSync(full)) { read.add(p); return { contents: fs.readFileSync(full, 'utf8') }; }
  }
  return { error: 'not found: ' + p };
}
const input = fs.readFileSync(0, 'utf8');
const output = JSON.parse(solc.compile(input, { import: findImports }));
process.stdout.write(JSON.stringify({ version: solc.version(), output, imported: [...read].sort() }));
"""


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise SystemExit("build_contracts: `node` is not on PATH (needed to run the pinned solc-js)")
    if not (ROOT / "node_modules" / "solc").is_dir():
        raise SystemExit("build_contracts: node_modules/solc is missing; run `npm ci` first")
    return node


def _source_hash(version: str, files: dict[str, str]) -> str:
    """Hash of every file in the compilation unit (ours and imported) plus the compiler and settings."""
    h = hashlib.sha256()
    h.update(version.encode())
    h.update(json.dumps(SETTINGS, sort_keys=True).encode())
    for name in sorted(files):
        h.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    return "sha256:" + h.hexdigest()


def compile_all(contracts_dir: Path) -> dict[str, dict[str, Any]]:
    """Compile every <contracts_dir>/*.sol; return {ContractName: artifact} for contracts with bytecode."""
    rel = contracts_dir.relative_to(ROOT).as_posix()
    sources = {f"{rel}/{p.name}": p.read_text(encoding="utf-8") for p in sorted(contracts_dir.glob("*.sol"))}
    if not sources:
        raise SystemExit(f"build_contracts: no {rel}/*.sol found")
    return compile_files(sources)


def compile_files(sources: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Compile {source name: Solidity text} as one unit; {ContractName: artifact} for contracts with bytecode
    (also used for the zk setup's generated verifier, scripts/zk_setup.py)."""
    std_input = {
        "language": "Solidity",
        "sources": {name: {"content": text} for name, text in sources.items()},
        "settings": SETTINGS,
    }
    proc = subprocess.run(
        [_node(), "-e", _NODE_COMPILE],
        input=json.dumps(std_input),
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"build_contracts: solc-js failed:\n{proc.stderr}")
    result = json.loads(proc.stdout)
    output = result["output"]
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    for e in output.get("errors", []):
        print(e.get("formattedMessage", e.get("message")), file=sys.stderr)
    if errors:
        raise SystemExit(f"build_contracts: {len(errors)} compile error(s)")

    all_files = dict(sources)
    for imp in result["imported"]:
        for base in (ROOT, ROOT / "node_modules"):
            if (base / imp).is_file():
                all_files[imp] = (base / imp).read_text(encoding="utf-8")
                break
    version = result["version"]
    source_hash = _source_hash(version, all_files)

    artifacts: dict[str, dict[str, Any]] = {}
    for source_name in sources:
        for name, c in output["contracts"].get(source_name, {}).items():
            bytecode = c["evm"]["bytecode"]["object"]
            if not bytecode:  # interfaces and abstract contracts
                continue
            artifacts[name] = {
                "contractName": name,
                "sourceName": source_name,
                "abi": c["abi"],
                "bytecode": "0x" + bytecode,
                "deployedBytecode": "0x" + c["evm"]["deployedBytecode"]["object"],
                "compiler": {"version": version, "settings": SETTINGS},
                "sourceHash": source_hash,
            }
    return artifacts


def _dump(artifact: dict[str, Any]) -> str:
    return json.dumps(artifact, indent=2, sort_keys=True) + "\n"


def write(artifacts: dict[str, dict[str, Any]], artifacts_dir: Path) -> None:
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    for old in artifacts_dir.glob("*.json"):
        if old.stem not in artifacts:
            old.unlink()
    for name, art in artifacts.items():
        (artifacts_dir / f"{name}.json").write_text(_dump(art), encoding="utf-8")
        print(
            f"wrote {artifacts_dir.relative_to(ROOT)}/{name}.json ({(len(art['bytecode']) - 2) // 2} bytes)"
        )


def check(artifacts: dict[str, dict[str, Any]], artifacts_dir: Path) -> list[str]:
    """Differences between a fresh compile and the committed artifacts (empty when up to date)."""
    problems: list[str] = []
    committed = {p.stem for p in artifacts_dir.glob("*.json")}
    for extra in sorted(committed - artifacts.keys()):
        problems.append(f"{extra}.json has no contract in its sources any more")
    for name, art in sorted(artifacts.items()):
        path = artifacts_dir / f"{name}.json"
        if not path.is_file():
            problems.append(f"{name}.json is missing")
            continue
        old = json.loads(path.read_text(encoding="utf-8"))
        for key in ("sourceHash", "compiler", "abi", "bytecode", "deployedBytecode"):
            if old.get(key) != art[key]:
                problems.append(f"{name}.json: {key} differs from a fresh compile")
                break
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if committed artifacts are stale")
    args = parser.parse_args(argv)
    built = [(compile_all(src), out) for src, out in TARGETS]
    if args.check:
        problems = [f"{out.relative_to(ROOT)}/{p}" for arts, out in built for p in check(arts, out)]
        if problems:
            print("contract artifacts are stale:", file=sys.stderr)
            for p in problems:
                print(f"  - {p}", file=sys.stderr)
            print("run: make contracts", file=sys.stderr)
            return 1
        print(f"contract artifacts up to date ({sum(len(arts) for arts, _ in built)} contracts)")
        return 0
    for arts, out in built:
        write(arts, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
