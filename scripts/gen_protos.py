#!/usr/bin/env python3
"""Generate the Python stubs for protos/ into the shared library package `agentgpt`.

    python scripts/gen_protos.py          # (re)generate
    python scripts/gen_protos.py --check  # exit 1 if the committed stubs differ from a fresh generation

Proto package == import path: `agentgpt.session.v1` lands in agentgpt/session/v1/.
Typed stubs (.pyi) come from mypy-protobuf.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import sys
import tempfile
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
OUT_ROOT = ROOT
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def _protos() -> list[Path]:
    return sorted(PROTO_ROOT.rglob("*.proto"))


def generate(out: Path) -> None:
    include = Path(grpc_tools.__file__).parent / "_proto"
    files = [str(p.relative_to(PROTO_ROOT)) for p in _protos()]
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out=quiet:{out}",
        f"--mypy_grpc_out=quiet:{out}",
        *files,
    ]
    # mypy-protobuf's plugins sit beside this interpreter (the project venv).
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    # Packages need __init__.py files; generated dirs hold nothing else of ours.
    for f in files:
        d = out / Path(f).parent
        while d != out:
            (d / "__init__.py").touch()
            d = d.parent


def _generated(root: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for p in _protos():
        pkg_dir = root / p.relative_to(PROTO_ROOT).parent
        if pkg_dir.is_dir():
            for f in pkg_dir.iterdir():
                if f.name.endswith(GENERATED_SUFFIXES):
                    found[str(f.relative_to(root))] = f
    return found


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="fail if committed stubs are stale")
    ns = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fresh_root = Path(tmp)
        generate(fresh_root)
        fresh = _generated(fresh_root)
        current = _generated(OUT_ROOT)
        if ns.check:
            stale = sorted(
                name
                for name in fresh.keys() | current.keys()
                if name not in fresh
                or name not in current
                or not filecmp.cmp(fresh[name], current[name], shallow=False)
            )
            if stale:
                print("protobuf stubs are stale; run `make protos`:", *stale, sep="\n  ", file=sys.stderr)
                return 1
            print(f"protobuf stubs up to date ({len(fresh)} files)")
            return 0
        for name in current.keys() - fresh.keys():
            current[name].unlink()
        for name, src in fresh.items():
            dst = OUT_ROOT / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            (dst.parent / "__init__.py").touch()
            shutil.copyfile(src, dst)
        print(f"generated {len(fresh)} files from {len(_protos())} protos")
    return 0


if __name__ == "__main__":
    sys.exit(main())
