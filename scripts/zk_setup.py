#!/usr/bin/env python3
"""The zk_batch_prover's circuit, compiled, and its Groth16 trusted setup: generated here, cached.

    python scripts/zk_setup.py            # compile + set up (cached: a no-op the second time)
    python scripts/zk_setup.py --check    # exit 1 if the cached setup does not match the circuit

What it makes, in the setup directory (`AGENTGPT_ZK_DIR`, default `.agentgpt/zk`, a link to a cache
directory under ~/.cache keyed by the circuit source and the pinned toolchain, so a fresh clone on the
same machine and `make clean` reuse it):

    batch_chain.wasm          the witness generator (circom 2, WebAssembly)
    batch_chain.zkey          the Groth16 proving key
    verification_key.json     the verification key (what `agentgpt verify` and the recovery oracle use)
    BatchVerifier.sol/.json   the Solidity verifier snarkjs exports for this key, compiled with the pinned
                              solc-js (deployed with the contracts; SessionFactory calls it)
    setup.json                what was used: circuit hash, powers of tau, toolchain versions, times

The setup is **single-party**: one machine draws the toxic waste of both phases from os.urandom and
forgets it. That is fine for development and tests and not trustless. Production must start from a
public ceremony's powers-of-tau file (`--ptau FILE`, e.g. the Hermez/Perpetual Powers of Tau
`powersOfTau28_hez_final_12.ptau`) and run a multi-party phase 2 for this circuit, then deploy the
verifier that key exports (docs/zk-batch-prover.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CIRCUITS = ROOT / "circuits"
CIRCUIT = CIRCUITS / "batch_chain.circom"
NODE_MODULES = CIRCUITS / "node_modules"
POWER = 12  # 2^12 constraints: the 44-record circuit has 3,822
DEFAULT_DIR = ROOT / ".agentgpt" / "zk"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "agentgpt-sessions" / "zk"
OUTPUTS = (
    "batch_chain.wasm",
    "batch_chain.zkey",
    "verification_key.json",
    "BatchVerifier.sol",
    "BatchVerifier.json",
)


def _say(msg: str) -> None:
    print(f"zk setup: {msg}", flush=True)


def circuit_key() -> str:
    """What the setup depends on: the circuit, the circomlib it includes, the toolchain's lockfile."""
    h = hashlib.sha256()
    for path in (CIRCUIT, CIRCUITS / "package-lock.json"):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    h.update(f"power={POWER}".encode())
    return h.hexdigest()[:16]


def _run(*args: str, cwd: Path, what: str) -> None:
    start = time.monotonic()
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"zk setup: {what} failed (exit {proc.returncode})")
    _say(f"{what}: {time.monotonic() - start:.1f} s")


def _snarkjs(*args: str, cwd: Path, what: str) -> None:
    _run("node", str(NODE_MODULES / "snarkjs" / "build" / "cli.cjs"), *args, cwd=cwd, what=what)


def _entropy() -> str:
    return os.urandom(32).hex()


def _compile_verifier(sol: Path) -> dict[str, object]:
    sys.path.insert(0, str(ROOT / "scripts"))
    import build_contracts  # the pinned solc-js, the project's settings

    return build_contracts.compile_files({"BatchVerifier.sol": sol.read_text()})["BatchVerifier"]


def build(out: Path, ptau: Path | None) -> None:
    if not (NODE_MODULES / "snarkjs").is_dir():
        raise SystemExit("zk setup: circuits/node_modules is missing; run `make setup` (npm ci in circuits/)")
    times: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="zk-setup-") as tmp_s:
        tmp = Path(tmp_s)
        t0 = time.monotonic()
        _run(
            "node",
            str(NODE_MODULES / "circom2" / "cli.js"),
            str(CIRCUIT),
            "--r1cs",
            "--wasm",
            "--O2",
            "-l",
            str(NODE_MODULES),
            "-o",
            str(tmp),
            cwd=CIRCUITS,
            what="compile the circuit (circom 2)",
        )
        times["compile_s"] = time.monotonic() - t0
        t0 = time.monotonic()
        if ptau is None:
            _say(f"phase 1: a single-party powers of tau (2^{POWER}); a few minutes, once per machine")
            _snarkjs(
                "powersoftau", "new", "bn128", str(POWER), "pot_0.ptau", cwd=tmp, what="powers of tau: new"
            )
            _snarkjs(
                "powersoftau",
                "contribute",
                "pot_0.ptau",
                "pot_1.ptau",
                "--name=local",
                f"-e={_entropy()}",
                cwd=tmp,
                what="powers of tau: contribute",
            )
            _snarkjs(
                "powersoftau", "prepare", "phase2", "pot_1.ptau", "pot.ptau", cwd=tmp, what="prepare phase 2"
            )
            ptau = tmp / "pot.ptau"
        times["phase1_s"] = time.monotonic() - t0
        t0 = time.monotonic()
        _snarkjs(
            "groth16", "setup", "batch_chain.r1cs", str(ptau), "bc_0.zkey", cwd=tmp, what="phase 2: setup"
        )
        _snarkjs(
            "zkey",
            "contribute",
            "bc_0.zkey",
            "batch_chain.zkey",
            "--name=local",
            f"-e={_entropy()}",
            cwd=tmp,
            what="phase 2: contribute",
        )
        _snarkjs(
            "zkey",
            "export",
            "verificationkey",
            "batch_chain.zkey",
            "verification_key.json",
            cwd=tmp,
            what="export the verification key",
        )
        _snarkjs(
            "zkey",
            "export",
            "solidityverifier",
            "batch_chain.zkey",
            "Groth16Verifier.sol",
            cwd=tmp,
            what="export the Solidity verifier",
        )
        times["phase2_s"] = time.monotonic() - t0
        sol = (
            (tmp / "Groth16Verifier.sol")
            .read_text()
            .replace("contract Groth16Verifier", "contract BatchVerifier")
        )
        (tmp / "BatchVerifier.sol").write_text(sol)
        (tmp / "BatchVerifier.json").write_text(
            json.dumps(_compile_verifier(tmp / "BatchVerifier.sol"), indent=1)
        )
        shutil.copy(tmp / "batch_chain_js" / "batch_chain.wasm", tmp / "batch_chain.wasm")
        staging = out.with_name(out.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for name in OUTPUTS:
            shutil.copy(tmp / name, staging / name)
        info = {
            "circuit": "circuits/batch_chain.circom",
            "key": circuit_key(),
            "power": POWER,
            "ptau": str(ptau.name) if ptau.parent != tmp else "single-party (generated here)",
            "single_party": ptau.parent == tmp,
            "created_at": int(time.time()),
            **{k: round(v, 1) for k, v in times.items()},
        }
        (staging / "setup.json").write_text(json.dumps(info, indent=1) + "\n")
        shutil.rmtree(out, ignore_errors=True)
        staging.rename(out)  # all or nothing: a setup killed half way is started again next time


CONSTANTS = ROOT / "agentgpt" / "zk" / "poseidon_t17.json"


def poseidon_constants() -> str:
    """circomlibjs's Poseidon round constants and MDS matrix for t = 17 (agentgpt/zk/poseidon.py)."""
    data = json.loads((NODE_MODULES / "circomlibjs" / "src" / "poseidon_constants.json").read_text())
    t17 = {
        "source": "circomlibjs src/poseidon_constants.json, t = 17",
        "C": data["C"][15],
        "M": data["M"][15],
    }
    return json.dumps(t17, indent=0) + "\n"


def is_complete(path: Path) -> bool:
    try:
        info = json.loads((path / "setup.json").read_text())
    except (OSError, ValueError):
        return False
    return info.get("key") == circuit_key() and all((path / n).is_file() for n in OUTPUTS)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--dir",
        type=Path,
        default=Path(os.environ.get("AGENTGPT_ZK_DIR", DEFAULT_DIR)),
        help="the setup directory the services read (default: %(default)s)",
    )
    p.add_argument(
        "--ptau", type=Path, help=f"a ceremony's prepared powers-of-tau file (2^{POWER} or larger)"
    )
    p.add_argument("--force", action="store_true", help="set up again even when a matching setup is cached")
    p.add_argument(
        "--check", action="store_true", help="exit 1 unless the setup directory matches the circuit"
    )
    p.add_argument("--constants", action="store_true", help="write agentgpt/zk/poseidon_t17.json")
    p.add_argument("--check-constants", action="store_true", help="exit 1 if poseidon_t17.json is stale")
    args = p.parse_args(argv)
    target: Path = args.dir
    if args.constants or args.check_constants:
        fresh = poseidon_constants()
        if args.constants:
            CONSTANTS.write_text(fresh)
            return 0
        if not CONSTANTS.is_file() or CONSTANTS.read_text() != fresh:
            print(
                f"zk setup: {CONSTANTS.relative_to(ROOT)} is stale; run scripts/zk_setup.py --constants",
                file=sys.stderr,
            )
            return 1
        return 0
    if args.check:
        if is_complete(target):
            return 0
        print(
            f"zk setup: {target} is missing or stale for circuits/batch_chain.circom; run `make setup`",
            file=sys.stderr,
        )
        return 1
    cached = CACHE / circuit_key()
    if args.ptau is not None or args.force or not is_complete(cached):
        start = time.monotonic()
        build(cached, args.ptau.resolve() if args.ptau else None)
        _say(f"done in {time.monotonic() - start:.0f} s: {cached}")
    if target.resolve() != cached.resolve():
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.is_dir():
            shutil.rmtree(target)
        target.symlink_to(cached, target_is_directory=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
