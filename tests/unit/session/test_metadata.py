"""The session NFT's metadata document: ERC-721 metadata JSON built from the SessionDB record alone."""

from __future__ import annotations

import base64
import json
from xml.etree import ElementTree

from agentgpt.ipfs.cid import compute_cid
from services.session.metadata import document_bytes, metadata_document, spec_bytes, token_uri
from tests.unit.session.records import SPEC_JSON, session_record

E18 = 10**18


def test_the_document_has_the_erc721_fields_and_what_the_session_is() -> None:
    rec = session_record(
        state=2,
        budget=str(50 * E18),
        budget_spent=str(E18 // 2),
        executor="0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
        checkpoint_json=json.dumps({"seq": 9, "cid": "bafkcp", "state_root": "ab" * 32, "at": 1.0}),
    )
    doc = metadata_document(rec)
    assert doc["name"] == "AgentGPT session #7"
    assert doc["description"] == (
        "A treasury_management automation session, ACTIVE: 50 AGPT left in escrow, 0.5 AGPT spent, "
        "checkpoint 9 anchored."
    )
    assert doc["image"].startswith("data:image/svg+xml;base64,")
    traits = {a["trait_type"]: a["value"] for a in doc["attributes"]}
    assert traits == {
        "State": "ACTIVE",
        "Type": "treasury_management",
        "Owner": rec.owner,
        "Executor": rec.executor,
        "Budget left (AGPT)": 50.0,
        "Spent (AGPT)": 0.5,
        "Checkpoint": 9,
    }
    props = doc["properties"]
    assert props["checkpoint"] == {"seq": 9, "cid": "bafkcp", "state_root": "0x" + "ab" * 32}
    assert props["budget"] == {"remaining": str(50 * E18), "spent": str(E18 // 2), "decimals": 18}
    assert props["spec_cid"] == compute_cid(spec_bytes(rec), "raw")
    assert json.loads(spec_bytes(rec)) == json.loads(SPEC_JSON)
    assert props["workflow_hash"] == "0x" + "11" * 32 and props["home_chain_id"] == 31337


def test_the_uri_is_the_documents_cid_and_changes_with_the_session() -> None:
    draft = session_record()
    assert token_uri(draft) == "ipfs://" + compute_cid(document_bytes(draft), "raw")
    assert token_uri(draft) == token_uri(session_record())  # reproducible from the record
    assert token_uri(session_record(state=2)) != token_uri(draft)
    assert token_uri(session_record(budget_spent="11")) != token_uri(draft)
    assert token_uri(session_record(version=99, updated_at=5.0)) == token_uri(draft)  # not bookkeeping


def test_a_huge_budget_and_odd_text_stay_valid_json() -> None:
    rec = session_record(budget=str(2**256 - 1), type='x"<svg>é\u202e')
    doc = json.loads(document_bytes(rec))
    assert doc["properties"]["budget"]["remaining"] == str(2**256 - 1)
    assert doc["attributes"][1]["value"] == 'x"<svg>é\u202e'
    svg = base64.b64decode(doc["image"].removeprefix("data:image/svg+xml;base64,")).decode()
    texts = [t.text for t in ElementTree.fromstring(svg).iter("{http://www.w3.org/2000/svg}text")]
    assert texts == ["Session #7", 'x"<svg>é\u202e', "DRAFT"]  # escaped: markup in a type stays text
