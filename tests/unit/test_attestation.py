"""agentgpt.attestation and the spec's `attestation:` block: the real DCAP samples verified at a pinned
time, and refused when tampered, outside the policy, expired, or checked against a foreign root CA."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agentgpt import attestation as at
from agentgpt.errors import InvalidArgument
from agentgpt.spec import parse_yaml

DCAP = Path(__file__).resolve().parents[1] / "fixtures" / "dcap"
SAMPLE_TIME = int(dt.datetime(2025, 6, 19, 11, 56, 11, tzinfo=dt.UTC).timestamp())
SGX_MRENCLAVE = "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
SGX_MRSIGNER = "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6"
SGX_OK = at.Policy.of(tcb=("UpToDate", "ConfigurationAndSWHardeningNeeded"))


def sample(kind: str) -> tuple[bytes, str]:
    return (DCAP / f"{kind}_quote").read_bytes(), (DCAP / f"{kind}_quote_collateral.json").read_text()


def test_real_sgx_sample_accepted_at_pinned_time() -> None:
    quote, coll = sample("sgx")
    att = at.verify(quote, coll, SAMPLE_TIME, at.Policy.of(SGX_OK.tcb, [SGX_MRENCLAVE]))
    assert att.kind == "sgx"
    assert att.measurement == SGX_MRENCLAVE
    assert att.mrsigner == SGX_MRSIGNER
    assert att.tcb_status == "ConfigurationAndSWHardeningNeeded"
    assert set(att.advisory_ids) == {"INTEL-SA-00289", "INTEL-SA-00615"}
    assert len(att.report_data) == 64 and att.verified_at == SAMPLE_TIME


def test_real_tdx_sample_accepted_up_to_date() -> None:
    quote, coll = sample("tdx")
    att = at.verify(quote, coll, SAMPLE_TIME)
    assert att.kind == "tdx" and att.tcb_status == "UpToDate"
    assert len(att.measurement) == 96 and att.mrsigner == ""
    # the policy with exactly that MRTD accepts it too
    assert at.verify(quote, coll, SAMPLE_TIME, at.Policy.of(measurements=[att.measurement])) == att


def test_default_policy_refuses_sgx_sample_tcb() -> None:
    quote, coll = sample("sgx")
    with pytest.raises(
        at.AttestationError, match="TCB status ConfigurationAndSWHardeningNeeded is not accepted"
    ):
        at.verify(quote, coll, SAMPLE_TIME)


def test_wrong_measurement_refused() -> None:
    quote, coll = sample("sgx")
    with pytest.raises(at.AttestationError, match=r"measurement 33d8736d.* is not one of the 1 allowed"):
        at.verify(quote, coll, SAMPLE_TIME, at.Policy.of(SGX_OK.tcb, ["00" * 32]))


@pytest.mark.parametrize("where", ["body", "report_data", "signature"])
def test_tampered_quote_refused(where: str) -> None:
    quote, coll = sample("sgx")
    offset = {"body": 48 + 64, "report_data": 48 + 320, "signature": 436 + 10}[where]
    bad = bytearray(quote)
    bad[offset] ^= 0x01
    with pytest.raises(at.AttestationError, match="refused by DCAP verification"):
        at.verify(bytes(bad), coll, SAMPLE_TIME, SGX_OK)


def test_truncated_quote_and_bad_collateral_refused() -> None:
    quote, coll = sample("sgx")
    with pytest.raises(at.AttestationError, match="refused by DCAP verification"):
        at.verify(quote[:300], coll, SAMPLE_TIME, SGX_OK)
    with pytest.raises(at.AttestationError, match="is not DCAP collateral JSON"):
        at.verify(quote, '{"tcb_info": 1}', SAMPLE_TIME, SGX_OK)
    with pytest.raises(at.AttestationError, match="must be 1"):
        at.verify(b"", coll, SAMPLE_TIME, SGX_OK)


def test_expired_collateral_refused() -> None:
    quote, coll = sample("sgx")
    later = int(dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp())
    with pytest.raises(at.AttestationError, match=r"(?i)expired"):
        at.verify(quote, coll, later, SGX_OK)
    # collateral from the other quote does not verify this one
    _, tdx_coll = sample("tdx")
    with pytest.raises(at.AttestationError):
        at.verify(quote, tdx_coll, SAMPLE_TIME, SGX_OK)


def _self_signed_root() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test SGX Root CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(2040, 1, 1, tzinfo=dt.UTC))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def test_foreign_root_ca_refused() -> None:
    quote, coll = sample("sgx")
    with pytest.raises(at.AttestationError, match="refused by DCAP verification"):
        at.verify(quote, coll, SAMPLE_TIME, SGX_OK, root_ca_der=_self_signed_root())


def test_key_binding_round_trip() -> None:
    address = "0x" + "ab" * 20
    nonce = os.urandom(32)
    rd = at.report_data_for(address, nonce)
    assert len(rd) == 64 and at.binds(rd, address)
    assert not at.binds(rd, "0x" + "cd" * 20)
    flipped = bytes([rd[0] ^ 1]) + rd[1:]
    assert not at.binds(flipped, address)
    assert not at.binds(rd[:63], address)
    # the real sample's report data binds no executor key of ours
    quote, coll = sample("sgx")
    assert at.verify(quote, coll, SAMPLE_TIME, SGX_OK, address=address).bound_key == ""


SPEC = """
type: treasury_management
chains: [anvil]
attestation:
{block}
"""


def test_spec_attestation_block_normalised() -> None:
    spec = parse_yaml(
        SPEC.format(
            block=f"  require: true\n  measurements: ['0x{SGX_MRENCLAVE.upper()}']\n  tcb: [uptodate, SWHardeningNeeded]"
        )
    )
    block = spec.params["attestation"]
    assert block == {
        "require": True,
        "measurements": [SGX_MRENCLAVE],
        "tcb": ["SWHardeningNeeded", "UpToDate"],
    }
    policy = at.spec_policy(block)
    assert policy is not None and policy.measurements == {SGX_MRENCLAVE}
    assert at.spec_policy(parse_yaml(SPEC.format(block="  require: false")).params["attestation"]) is None


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("  require: yes please", "attestation.require: must be true or false"),
        ("  measurements: [abc]", r"attestation.measurements\[0\]: must be 32-byte"),
        ("  tcb: [Fine]", r"attestation.tcb\[0\]: must be one of UpToDate"),
        ("  mrenclave: x", "attestation: has unknown keys: mrenclave"),
        ("  require: false\n  tcb: [UpToDate]", "says require: false"),
    ],
)
def test_spec_attestation_block_errors(block: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_yaml(SPEC.format(block=block))


def test_describe_quote_for_listings() -> None:
    assert at.describe_quote(sample("sgx")[0]) == f"sgx MRENCLAVE {SGX_MRENCLAVE[:16]}…"
    assert at.describe_quote(sample("tdx")[0]).startswith("tdx MRTD ")
    assert at.describe_quote(b"") == ""
    assert at.describe_quote(b"xx").startswith("unparsable quote")


def test_executor_listing_shows_the_quote() -> None:
    from apps.cli import main as cli

    row = {
        "service": "executor-1",
        "pid": 3,
        "executor": {
            "answering": True,
            "executor_id": "executor-1",
            "address": "0x" + "11" * 20,
            "capacity": 8,
            "draining": False,
            "attestation": at.describe_quote(sample("sgx")[0]),
            "sessions": [],
        },
    }
    assert cli.executor_lines([row], {})[1].endswith(f"none [quote: sgx MRENCLAVE {SGX_MRENCLAVE[:16]}…]")


def test_executor_reads_its_attestation_files(tmp_path: Path) -> None:
    from agentgpt.runtime.config import ConfigError
    from services.executor.app import attestation_files
    from services.executor.config import ExecutorConfig

    quote, coll = sample("sgx")
    assert attestation_files(ExecutorConfig()) == (b"", "")
    q, c = tmp_path / "quote", tmp_path / "collateral.json"
    q.write_bytes(quote)
    c.write_text(coll)
    both = ExecutorConfig(attestation_quote_file=str(q), attestation_collateral_file=str(c))
    assert attestation_files(both) == (quote, coll)
    with pytest.raises(ConfigError, match="go together"):
        attestation_files(ExecutorConfig(attestation_quote_file=str(q)))
    with pytest.raises(ConfigError, match="attestation files"):
        attestation_files(dataclasses.replace(both, attestation_collateral_file=str(tmp_path / "missing")))
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(ConfigError, match="the quote must be 1"):
        attestation_files(dataclasses.replace(both, attestation_quote_file=str(tmp_path / "empty")))
