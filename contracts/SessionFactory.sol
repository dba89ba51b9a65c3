// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";
import {Clones} from "@openzeppelin/contracts/proxy/Clones.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {IERC4906} from "@openzeppelin/contracts/interfaces/IERC4906.sol";
import {IERC165} from "@openzeppelin/contracts/utils/introspection/IERC165.sol";

/// @notice What the factory needs from the ExecutorRegistry.
interface IExecutorRegistry {
    function isBonded(address executor) external view returns (bool);
}

/// @notice The Groth16 verifier snarkjs exports for the zk_batch_prover circuit (scripts/zk_setup.py).
interface IBatchVerifier {
    function verifyProof(
        uint256[2] calldata a,
        uint256[2][2] calldata b,
        uint256[2] calldata c,
        uint256[5] calldata publicSignals
    ) external view returns (bool);
}

/// @notice What the factory needs from a session's account: its action policies, committed at activation.
interface IPolicyAccount {
    function commitPolicies(bytes calldata encoded) external;
}

/// @title SessionFactory — the on-chain half of a session (docs/design.md §2, §4, §5).
/// @notice Each session is an ERC-721 whose token id is the session id. The factory escrows the session's
///         AGPT budget, mirrors the lifecycle of `agentgpt/lifecycle.py` (same states, same deadlines, same
///         rule that only `expire` is accepted once a deadline has passed), fences executors with an epoch,
///         anchors checkpoints and guards what the session's account may call.
///
///         Budget charges are paid to the assigned executor (the party doing the work and paying gas);
///         what is left is refunded to the owner when the session completes or terminates.
///
///         Owners never need ETH: create, activate, updateBudget and complete have `...BySig` variants that
///         anyone (the session service) relays with the owner's EIP-712 signature; AGPT moves with the
///         owner's ERC-2612 permit.
///
///         Metadata (ERC-721 metadata JSON, ERC-4906): `tokenURI` is the `ipfs://` address of a document the
///         control plane (ORACLE_ROLE) writes to IPFS and sets after each change; every change of what the
///         document shows (state, executor, budget, checkpoint) emits `MetadataUpdate`, and so does each
///         `setTokenURI`, so wallets and explorers refetch it.
contract SessionFactory is ERC721, AccessControl, EIP712, Nonces, IERC4906 {
    using SafeERC20 for IERC20;

    /// @dev Values equal `agentgpt.lifecycle.SessionState` (NONE marks a session id that does not exist).
    enum SessionState {
        NONE,
        DRAFT,
        ACTIVE,
        PAUSED,
        COMPLETED,
        TERMINATED
    }

    /// @dev Mirrors `agentgpt.lifecycle.TerminalReason` in declaration order (NONE while not final).
    enum TerminalReason {
        NONE,
        COMPLETED,
        DRAFT_EXPIRED,
        ACTIVE_TIMED_OUT,
        PAUSED_TOO_LONG,
        CANCELLED
    }

    /// @notice One allowlisted call: `selector` on `target` (selector 0 = calls with under 4 bytes of data).
    struct AllowedCall {
        address target;
        bytes4 selector;
    }

    /// @notice An optional ERC-2612 permit for AGPT; `deadline == 0` means "no permit, use the allowance".
    struct Permit {
        uint256 deadline;
        uint8 v;
        bytes32 r;
        bytes32 s;
    }

    /// @notice What a completion or termination anchors with it, closing the session's history on chain
    ///         (docs/checkpoint-format.md, "Final anchor"): the final checkpoint, which covers tasks 1..seq,
    ///         and the archived event log (its IPFS CID and its Arweave transaction id).
    ///         - `seq == lastSeq`, `cid` empty: the final checkpoint is the one anchored last (no signature);
    ///         - `seq == lastSeq`, `cid` given: it must be that checkpoint (cid and stateRoot match);
    ///         - `seq > lastSeq`: a new checkpoint, signed by the assigned executor as EIP-712
    ///           Checkpoint(sessionId, seq, stateRoot, prevRoot) in this contract's domain; it is anchored
    ///           here (CheckpointAnchored, writer = that executor) before the session ends.
    struct FinalAnchor {
        uint64 seq;
        bytes32 stateRoot;
        bytes32 prevRoot;
        bytes cid;
        bytes executorSignature;
        bytes logCid;
        bytes32 arweaveTx; // the archived log's Arweave transaction id (32 bytes); zero when none
    }

    struct Session {
        // slot 0: everything the lifecycle checks need, read with one SLOAD
        address owner; // current NFT owner; kept after the burn so final-state sweeps know who it was
        SessionState state;
        TerminalReason reason;
        uint40 enteredAt; // when the current state was entered
        uint40 activeUsed; // ACTIVE seconds consumed before enteredAt (the active clock stops while PAUSED)
        // slot 1: executor fencing + checkpoint sequence
        address executor;
        uint64 lastSeq;
        uint24 epoch; // bumped on every executor assignment
        bool proved; // zk_batch_prover: checkpoints anchor only with their proofs (PROVED_MARKER allowlisted)
        // slot 2: everything chargeBudget touches, read and written with one SLOAD/SSTORE
        uint96 budget; // AGPT still in escrow
        uint96 spent; // AGPT charged so far
        uint64 chargedSeq; // highest task seq covered by a charge: each task is charged at most once
        // slot 3, 4
        bytes32 workflowHash;
        bytes32 checkpointHash; // keccak256(abi.encode(keccak256(cid), stateRoot)) of the latest anchor
    }

    bytes32 public constant ORACLE_ROLE = keccak256("ORACLE_ROLE");
    uint256 public constant MAX_ALLOWLIST = 64;

    bytes32 public constant ALLOWED_CALL_TYPEHASH = keccak256("AllowedCall(address target,bytes4 selector)");
    bytes32 public constant CREATE_TYPEHASH = keccak256(
        "CreateSession(address owner,bytes32 workflowHash,uint256 initialBudget,uint256 nonce,uint256 deadline)"
    );
    bytes32 public constant ACTIVATE_TYPEHASH = keccak256(
        "Activate(uint256 sessionId,bytes32 workflowHash,address executor,AllowedCall[] allowlist,bytes32 policyHash,uint256 nonce,uint256 deadline)AllowedCall(address target,bytes4 selector)"
    );
    bytes32 public constant UPDATE_BUDGET_TYPEHASH =
        keccak256("UpdateBudget(uint256 sessionId,uint256 amount,uint256 nonce,uint256 deadline)");
    bytes32 public constant COMPLETE_TYPEHASH = keccak256("Complete(uint256 sessionId,uint256 nonce,uint256 deadline)");
    /// @dev The executor's checkpoint signature (checkpoint format v2; also signed for every checkpoint).
    bytes32 public constant CHECKPOINT_TYPEHASH =
        keccak256("Checkpoint(uint256 sessionId,uint64 seq,bytes32 stateRoot,bytes32 prevRoot)");

    IERC20 public immutable agpt;
    IExecutorRegistry public immutable registry;
    address public immutable accountImplementation;
    uint40 public immutable draftDuration;
    uint40 public immutable activeDuration;
    uint40 public immutable pausedDuration;
    /// @notice The zk_batch_prover's verifier (zero: this deployment anchors no proved sessions).
    IBatchVerifier public immutable batchVerifier;

    uint256 public lastSessionId;
    mapping(uint256 sessionId => Session) private _sessions;
    mapping(uint256 sessionId => mapping(address target => mapping(bytes4 selector => bool))) private _allowed;
    mapping(uint256 sessionId => string) private _tokenURIs;

    /// @notice A proved session's latest Poseidon root and the AGPT its proved batches charged
    ///         (agentgpt/zk/batch.py); both start at 0.
    struct BatchProofs {
        uint256 root;
        uint256 spent;
    }

    mapping(uint256 sessionId => BatchProofs) public batchProofOf;

    /// @dev The allowlist entry (target 0, this selector) marks a session whose checkpoints must be proved:
    ///      the owner's activation signature commits it with the rest of the allowlist.
    bytes4 public constant PROVED_MARKER =
        bytes4(keccak256("anchorCheckpointProved(uint256,uint64,bytes,bytes32,uint256[5][],uint256[8][])"));
    /// @dev Gas handed to the verifier per proof (it uses ~200k); below that it would answer false (out of gas
    ///      in the pairing precompile) instead of reverting, so too little gas left reverts first.
    uint256 public constant BATCH_VERIFY_GAS = 260_000;

    event SessionCreated(
        uint256 indexed sessionId, address indexed owner, bytes32 workflowHash, uint256 budget, address account
    );
    event SessionStateChanged(
        uint256 indexed sessionId, SessionState from, SessionState to, TerminalReason reason, uint40 activeUsed
    );
    event SessionActivated(uint256 indexed sessionId, bytes32 workflowHash, bytes32 allowlistHash, uint256 allowlistLength);
    event ExecutorAssigned(uint256 indexed sessionId, address indexed executor, uint32 epoch);
    event BudgetAdded(uint256 indexed sessionId, address indexed from, uint256 amount, uint256 budget);
    /// @dev One charge covers the session's tasks (fromSeq, throughSeq]; consecutive charges tile the task
    ///      sequence without overlap, so the events alone show that no task was paid for twice.
    event BudgetCharged(
        uint256 indexed sessionId,
        address indexed executor,
        uint256 amount,
        uint256 remaining,
        bytes32 receiptHash,
        uint64 fromSeq,
        uint64 throughSeq
    );
    event BudgetRefunded(uint256 indexed sessionId, address indexed to, uint256 amount);
    /// @dev Same shape as AnchorRegistry.CheckpointAnchored; here homeChainId is always block.chainid.
    /// @notice A proved anchor's batches checked: the session's Poseidon root and proved spend after them.
    event BatchesProved(uint256 indexed sessionId, uint64 seq, uint256 root, uint256 spent, uint256 batches);
    event CheckpointAnchored(
        uint256 indexed homeChainId,
        uint256 indexed sessionId,
        uint64 indexed seq,
        address writer,
        uint32 epoch,
        bytes32 stateRoot,
        bytes cid
    );

    /// @notice The session's history closed with its completion or termination (see FinalAnchor).
    event SessionFinalized(
        uint256 indexed sessionId, uint64 seq, bytes32 checkpointHash, bytes logCid, bytes32 arweaveTx
    );

    error SessionNotFound(uint256 sessionId);
    error ProofRequired(uint256 sessionId);
    error NoBatchVerifier();
    error BatchMismatch(uint256 sessionId, uint256 batch);
    error InvalidBatchProof(uint256 sessionId, uint256 batch);
    error OutOfGasForProof(uint256 sessionId, uint256 batch);
    error FinalCheckpointBehind(uint256 sessionId, uint64 lastSeq, uint64 seq);
    error FinalCheckpointMismatch(uint256 sessionId, uint64 seq);
    error InvalidState(uint256 sessionId, SessionState state);
    error DeadlinePassed(uint256 sessionId, uint256 deadline);
    error DeadlineNotPassed(uint256 sessionId, uint256 deadline);
    error NotSessionOwner(uint256 sessionId, address caller);
    error NotAssignedExecutor(uint256 sessionId, address caller, uint32 epoch);
    error NotOwnerOrExecutor(uint256 sessionId, address caller);
    error NotOwnerOrOracle(uint256 sessionId, address caller);
    error ExecutorNotBonded(address executor);
    error NonIncreasingSeq(uint256 sessionId, uint64 lastSeq, uint64 seq);
    error BudgetExceeded(uint256 sessionId, uint256 requested, uint256 available);
    error ZeroAmount();
    error ZeroAddress();
    error AmountTooLarge();
    error AlreadyCharged(uint256 sessionId, uint64 chargedSeq, uint64 throughSeq);
    error InvalidDurations();
    error AllowlistTooLong(uint256 length, uint256 max);
    error ActionNotAllowed(uint256 sessionId, address target, bytes4 selector);
    error AccountCallNotAllowed(uint256 sessionId, address caller, SessionState state);
    error SignatureExpired(uint256 deadline);
    error InvalidSignature();
    error InvalidTokenURI();

    constructor(
        IERC20 agpt_,
        IExecutorRegistry registry_,
        address accountImplementation_,
        uint40 draftDuration_,
        uint40 activeDuration_,
        uint40 pausedDuration_,
        address admin,
        IBatchVerifier batchVerifier_
    ) ERC721("AgentGPT Session", "AGPTS") EIP712("AgentGPT SessionFactory", "1") {
        if (
            address(agpt_) == address(0) || address(registry_) == address(0) || accountImplementation_ == address(0)
                || admin == address(0)
        ) revert ZeroAddress();
        if (draftDuration_ == 0 || activeDuration_ == 0 || pausedDuration_ == 0) revert InvalidDurations();
        agpt = agpt_;
        registry = registry_;
        accountImplementation = accountImplementation_;
        draftDuration = draftDuration_;
        activeDuration = activeDuration_;
        pausedDuration = pausedDuration_;
        batchVerifier = batchVerifier_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    // ------------------------------------------------------------------ create

    /// @notice Create a DRAFT session owned by the caller, escrowing `initialBudget` AGPT (approve first).
    function createSession(bytes32 workflowHash, uint256 initialBudget) external returns (uint256 sessionId) {
        sessionId = _create(msg.sender, workflowHash, initialBudget);
        agpt.safeTransferFrom(msg.sender, address(this), initialBudget);
    }

    /// @notice `createSession` for `owner`, relayed by anyone with the owner's CreateSession signature.
    function createSessionBySig(
        address owner,
        bytes32 workflowHash,
        uint256 initialBudget,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature,
        Permit calldata permit
    ) external returns (uint256 sessionId) {
        if (owner == address(0)) revert ZeroAddress();
        _useSignature(
            owner,
            keccak256(abi.encode(CREATE_TYPEHASH, owner, workflowHash, initialBudget, nonce, deadline)),
            nonce,
            deadline,
            signature
        );
        sessionId = _create(owner, workflowHash, initialBudget);
        _pull(owner, initialBudget, permit);
    }

    // ------------------------------------------------------------------ activate

    /// @notice DRAFT -> ACTIVE: commit the final workflow hash, assign a bonded executor and the allowlist.
    /// @dev `policies`: the account's action policies, abi-encoded `SessionAccount.Policy[]` (empty: none);
    ///      the owner's signature covers keccak256(policies) as `policyHash`.
    function activate(
        uint256 sessionId,
        bytes32 workflowHash,
        address executor,
        AllowedCall[] calldata allowlist,
        bytes calldata policies
    ) external {
        Session storage s = _existing(sessionId);
        if (msg.sender != s.owner) revert NotSessionOwner(sessionId, msg.sender);
        _activate(sessionId, s, workflowHash, executor, allowlist, hashAllowlist(allowlist), policies);
    }

    function activateBySig(
        uint256 sessionId,
        bytes32 workflowHash,
        address executor,
        AllowedCall[] calldata allowlist,
        bytes calldata policies,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature
    ) external {
        Session storage s = _existing(sessionId);
        bytes32 allowlistHash = hashAllowlist(allowlist);
        _useSignature(
            s.owner,
            keccak256(
                abi.encode(
                    ACTIVATE_TYPEHASH,
                    sessionId,
                    workflowHash,
                    executor,
                    allowlistHash,
                    keccak256(policies),
                    nonce,
                    deadline
                )
            ),
            nonce,
            deadline,
            signature
        );
        _activate(sessionId, s, workflowHash, executor, allowlist, allowlistHash, policies);
    }

    // ------------------------------------------------------------------ budget

    /// @notice Add `amount` AGPT (from the owner) to an ACTIVE session's escrow.
    function updateBudget(uint256 sessionId, uint256 amount) external {
        Session storage s = _existing(sessionId);
        if (msg.sender != s.owner) revert NotSessionOwner(sessionId, msg.sender);
        _addBudget(sessionId, s, amount);
        agpt.safeTransferFrom(msg.sender, address(this), amount);
    }

    function updateBudgetBySig(
        uint256 sessionId,
        uint256 amount,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature,
        Permit calldata permit
    ) external {
        Session storage s = _existing(sessionId);
        address owner = s.owner;
        _useSignature(
            owner,
            keccak256(abi.encode(UPDATE_BUDGET_TYPEHASH, sessionId, amount, nonce, deadline)),
            nonce,
            deadline,
            signature
        );
        _addBudget(sessionId, s, amount);
        _pull(owner, amount, permit);
    }

    /// @notice The assigned executor is paid `amount` from the escrow for the session's tasks after the last
    ///         charge up to and including task `throughSeq`, as evidenced by `receiptHash` (the task log head).
    /// @dev Exactly-once on chain: `throughSeq` must exceed every earlier charge's, so a replayed or
    ///      duplicated charge (a crashed executor's retry, a second executor after a takeover) reverts with
    ///      AlreadyCharged whatever the executor's own bookkeeping says.
    function chargeBudget(uint256 sessionId, uint64 throughSeq, uint256 amount, bytes32 receiptHash) external {
        Session storage s = _existing(sessionId);
        _requireLive(sessionId, s, SessionState.ACTIVE);
        if (msg.sender != s.executor) revert NotAssignedExecutor(sessionId, msg.sender, s.epoch);
        if (amount == 0) revert ZeroAmount();
        uint64 fromSeq = s.chargedSeq;
        if (throughSeq <= fromSeq) revert AlreadyCharged(sessionId, fromSeq, throughSeq);
        uint256 available = s.budget;
        if (amount > available) revert BudgetExceeded(sessionId, amount, available);
        uint256 remaining = available - amount;
        s.budget = uint96(remaining);
        s.spent += uint96(amount);
        s.chargedSeq = throughSeq;
        emit BudgetCharged(sessionId, msg.sender, amount, remaining, receiptHash, fromSeq, throughSeq);
        emit MetadataUpdate(sessionId);
        agpt.safeTransfer(msg.sender, amount);
    }

    // ------------------------------------------------------------------ oracle

    /// @notice ACTIVE -> PAUSED (node failure or operator pause); stops the active clock.
    function pause(uint256 sessionId) external onlyRole(ORACLE_ROLE) {
        Session storage s = _existing(sessionId);
        _requireLive(sessionId, s, SessionState.ACTIVE);
        _transition(sessionId, s, SessionState.ACTIVE, SessionState.PAUSED, TerminalReason.NONE);
    }

    /// @notice PAUSED -> ACTIVE (automatic rehydration done).
    function resume(uint256 sessionId) external onlyRole(ORACLE_ROLE) {
        Session storage s = _existing(sessionId);
        _requireLive(sessionId, s, SessionState.PAUSED);
        _transition(sessionId, s, SessionState.PAUSED, SessionState.ACTIVE, TerminalReason.NONE);
    }

    /// @notice Fence the current executor out and assign a bonded one (ACTIVE or PAUSED); bumps the epoch.
    function reassignExecutor(uint256 sessionId, address executor) external onlyRole(ORACLE_ROLE) {
        Session storage s = _existing(sessionId);
        SessionState st = s.state;
        if (st != SessionState.ACTIVE && st != SessionState.PAUSED) revert InvalidState(sessionId, st);
        _requireBeforeDeadline(sessionId, s, st);
        if (!registry.isBonded(executor)) revert ExecutorNotBonded(executor);
        _assign(sessionId, s, executor);
    }

    // ------------------------------------------------------------------ metadata

    /// @notice Point the session's NFT at its metadata document, `ipfs://<CID>` (under 128 bytes).
    function setTokenURI(uint256 sessionId, string calldata uri) external onlyRole(ORACLE_ROLE) {
        _requireOwned(sessionId);
        bytes calldata b = bytes(uri);
        if (b.length < 8 || b.length > 128 || bytes7(b[:7]) != bytes7("ipfs://")) revert InvalidTokenURI();
        _tokenURIs[sessionId] = uri;
        emit MetadataUpdate(sessionId);
    }

    /// @notice The session's ERC-721 metadata document (empty until the control plane first sets it).
    function tokenURI(uint256 tokenId) public view override returns (string memory) {
        _requireOwned(tokenId);
        return _tokenURIs[tokenId];
    }

    // ------------------------------------------------------------------ checkpoints

    /// @notice Anchor checkpoint `seq` (strictly increasing) of an ACTIVE session; assigned executor only.
    /// @dev Stores only the sequence number and one 32-byte commitment; the CID travels in the event.
    function anchorCheckpoint(uint256 sessionId, uint64 seq, bytes calldata cid, bytes32 stateRoot) external {
        _anchor(sessionId, seq, cid, stateRoot, false);
    }

    /// @notice anchorCheckpoint with the zk_batch_prover's Groth16 proofs of the tasks since the last anchor:
    ///         batch i proves publics (prevRoot, newRoot, spentBefore, spentAfter, count); they must chain from
    ///         the session's stored root and spend, cover exactly the new tasks, and keep the proved spend
    ///         within what the escrow ever held (charged + left).
    function anchorCheckpointProved(
        uint256 sessionId,
        uint64 seq,
        bytes calldata cid,
        bytes32 stateRoot,
        uint256[5][] calldata publics,
        uint256[8][] calldata proofs
    ) external {
        uint64 last = _anchor(sessionId, seq, cid, stateRoot, true);
        _proveBatches(sessionId, seq - last, publics, proofs);
        emit BatchesProved(sessionId, seq, batchProofOf[sessionId].root, batchProofOf[sessionId].spent, publics.length);
    }

    function _proveBatches(
        uint256 sessionId,
        uint256 tasks,
        uint256[5][] calldata publics,
        uint256[8][] calldata proofs
    ) private {
        (uint256 root, uint256 spent, uint256 count) = _verifyBatches(sessionId, publics, proofs);
        Session storage s = _sessions[sessionId];
        if (count != tasks || spent > uint256(s.spent) + s.budget) revert BatchMismatch(sessionId, publics.length);
        batchProofOf[sessionId] = BatchProofs(root, spent);
    }

    function _verifyBatches(uint256 sessionId, uint256[5][] calldata publics, uint256[8][] calldata proofs)
        private
        view
        returns (uint256 root, uint256 spent, uint256 count)
    {
        if (address(batchVerifier) == address(0)) revert NoBatchVerifier();
        uint256 n = publics.length;
        if (n == 0 || n != proofs.length) revert BatchMismatch(sessionId, 0);
        BatchProofs storage z = batchProofOf[sessionId];
        (root, spent) = (z.root, z.spent);
        for (uint256 i = 0; i < n; ++i) {
            uint256[5] calldata p = publics[i];
            if (p[0] != root || p[2] != spent || p[3] < spent) revert BatchMismatch(sessionId, i);
            _verifyProof(sessionId, i, p, proofs[i]);
            (root, spent, count) = (p[1], p[3], count + p[4]);
        }
    }

    function _verifyProof(uint256 sessionId, uint256 i, uint256[5] calldata p, uint256[8] calldata w) private view {
        if (gasleft() < BATCH_VERIFY_GAS + BATCH_VERIFY_GAS / 63 + 10_000) revert OutOfGasForProof(sessionId, i);
        bool valid = batchVerifier.verifyProof{gas: BATCH_VERIFY_GAS}(
            [w[0], w[1]], [[w[2], w[3]], [w[4], w[5]]], [w[6], w[7]], p
        );
        if (!valid) revert InvalidBatchProof(sessionId, i);
    }

    /// @return last the seq anchored before this one
    function _anchor(uint256 sessionId, uint64 seq, bytes calldata cid, bytes32 stateRoot, bool withProofs)
        private
        returns (uint64 last)
    {
        Session storage s = _sessions[sessionId];
        SessionState st = s.state;
        if (st != SessionState.ACTIVE) {
            if (st == SessionState.NONE) revert SessionNotFound(sessionId);
            revert InvalidState(sessionId, st);
        }
        uint256 deadline = uint256(s.enteredAt) + activeDuration - s.activeUsed;
        if (block.timestamp >= deadline) revert DeadlinePassed(sessionId, deadline);
        uint32 epoch = s.epoch;
        if (msg.sender != s.executor) revert NotAssignedExecutor(sessionId, msg.sender, epoch);
        if (s.proved && !withProofs) revert ProofRequired(sessionId);
        last = s.lastSeq;
        if (seq <= last) revert NonIncreasingSeq(sessionId, last, seq);
        s.lastSeq = seq;
        s.checkpointHash = keccak256(abi.encode(keccak256(cid), stateRoot));
        emit CheckpointAnchored(block.chainid, sessionId, seq, msg.sender, epoch, stateRoot, cid);
        emit MetadataUpdate(sessionId);
    }

    // ------------------------------------------------------------------ endings

    /// @notice ACTIVE -> COMPLETED by the owner or the assigned executor, with the final anchor: refund what
    ///         is left, burn the NFT.
    function complete(uint256 sessionId, FinalAnchor calldata fin) external {
        Session storage s = _existing(sessionId);
        _requireLive(sessionId, s, SessionState.ACTIVE);
        if (msg.sender != s.owner && msg.sender != s.executor) revert NotOwnerOrExecutor(sessionId, msg.sender);
        _anchorFinal(sessionId, s, fin);
        _finish(sessionId, s, SessionState.COMPLETED, TerminalReason.COMPLETED);
    }

    /// @dev The owner signs the completion; the final anchor is the relayer's to give and is checked here
    ///      (a new final checkpoint only with the assigned executor's signature).
    function completeBySig(
        uint256 sessionId,
        FinalAnchor calldata fin,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature
    ) external {
        Session storage s = _existing(sessionId);
        _useSignature(
            s.owner, keccak256(abi.encode(COMPLETE_TYPEHASH, sessionId, nonce, deadline)), nonce, deadline, signature
        );
        _requireLive(sessionId, s, SessionState.ACTIVE);
        _anchorFinal(sessionId, s, fin);
        _finish(sessionId, s, SessionState.COMPLETED, TerminalReason.COMPLETED);
    }

    /// @notice Cancel a DRAFT, ACTIVE or PAUSED session before its deadline (owner or oracle), with the
    ///         final anchor.
    function terminate(uint256 sessionId, FinalAnchor calldata fin) external {
        Session storage s = _existing(sessionId);
        SessionState st = _requireNotFinal(sessionId, s);
        _requireBeforeDeadline(sessionId, s, st);
        if (msg.sender != s.owner && !hasRole(ORACLE_ROLE, msg.sender)) revert NotOwnerOrOracle(sessionId, msg.sender);
        _anchorFinal(sessionId, s, fin);
        _finish(sessionId, s, SessionState.TERMINATED, TerminalReason.CANCELLED);
    }

    /// @notice Anyone may end a session whose current deadline has passed (draft 1 h, active 72 h of active
    ///         time, paused 24 h); the escrow goes back to the owner.
    function expire(uint256 sessionId) external {
        Session storage s = _existing(sessionId);
        SessionState st = _requireNotFinal(sessionId, s);
        uint256 deadline = _deadline(s, st);
        if (block.timestamp < deadline) revert DeadlineNotPassed(sessionId, deadline);
        TerminalReason reason = st == SessionState.DRAFT
            ? TerminalReason.DRAFT_EXPIRED
            : (st == SessionState.ACTIVE ? TerminalReason.ACTIVE_TIMED_OUT : TerminalReason.PAUSED_TOO_LONG);
        _finish(sessionId, s, SessionState.TERMINATED, reason);
    }

    // ------------------------------------------------------------------ guard

    /// @notice The seed's guard, for msg.sender: reverts unless the session is ACTIVE (and not overdue), the
    ///         caller is its owner or assigned executor, and (target, selector of data) is allowlisted.
    function validateSessionAction(uint256 sessionId, address target, bytes calldata data) external view {
        _validateAction(msg.sender, sessionId, target, data);
    }

    /// @notice The rule a SessionAccount applies to `caller`: in ACTIVE the guard above; in DRAFT and in the
    ///         final states the owner alone, unrestricted (to fund or sweep the account); otherwise nobody.
    function checkAccountCall(address caller, uint256 sessionId, address target, bytes calldata data)
        external
        view
    {
        Session storage s = _existing(sessionId);
        SessionState st = s.state;
        if (st == SessionState.ACTIVE) {
            _validateAction(caller, sessionId, target, data);
            return;
        }
        if (st != SessionState.PAUSED && caller == s.owner) return;
        revert AccountCallNotAllowed(sessionId, caller, st);
    }

    // ------------------------------------------------------------------ views

    function getSession(uint256 sessionId) external view returns (Session memory) {
        return _sessions[sessionId];
    }

    /// @notice What the escrow holds, what was charged, and the highest task seq a charge covered.
    function budgetOf(uint256 sessionId) external view returns (uint256 budget, uint256 spent, uint64 chargedSeq) {
        Session storage s = _sessions[sessionId];
        return (s.budget, s.spent, s.chargedSeq);
    }

    function stateOf(uint256 sessionId) external view returns (SessionState) {
        return _sessions[sessionId].state;
    }

    /// @notice When the current state's timer fires (0 for final or unknown sessions).
    function deadlineOf(uint256 sessionId) external view returns (uint256) {
        Session storage s = _sessions[sessionId];
        SessionState st = s.state;
        if (st == SessionState.NONE || st == SessionState.COMPLETED || st == SessionState.TERMINATED) return 0;
        return _deadline(s, st);
    }

    function isAllowed(uint256 sessionId, address target, bytes4 selector) external view returns (bool) {
        return _allowed[sessionId][target][selector];
    }

    /// @notice The session's account (deployed by createSession at a CREATE2 address).
    function accountOf(uint256 sessionId) public view returns (address) {
        _existing(sessionId);
        return Clones.predictDeterministicAddressWithImmutableArgs(
            accountImplementation, abi.encode(address(this), sessionId), bytes32(sessionId)
        );
    }

    /// @notice The latest anchored checkpoint: its sequence number and commitment.
    function latestCheckpoint(uint256 sessionId) external view returns (uint64 seq, bytes32 checkpointHash) {
        Session storage s = _sessions[sessionId];
        return (s.lastSeq, s.checkpointHash);
    }

    /// @notice The commitment stored by anchorCheckpoint for (cid, stateRoot).
    function checkpointCommitment(bytes calldata cid, bytes32 stateRoot) external pure returns (bytes32) {
        return keccak256(abi.encode(keccak256(cid), stateRoot));
    }

    /// @notice EIP-712 encoding of an AllowedCall[] (keccak256 of the concatenated struct hashes).
    function hashAllowlist(AllowedCall[] calldata allowlist) public pure returns (bytes32) {
        uint256 n = allowlist.length;
        if (n > MAX_ALLOWLIST) revert AllowlistTooLong(n, MAX_ALLOWLIST);
        bytes32[] memory hashes = new bytes32[](n);
        for (uint256 i = 0; i < n; ++i) {
            hashes[i] = keccak256(abi.encode(ALLOWED_CALL_TYPEHASH, allowlist[i].target, allowlist[i].selector));
        }
        return keccak256(abi.encodePacked(hashes));
    }

    // solhint-disable-next-line func-name-mixedcase
    function DOMAIN_SEPARATOR() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    function supportsInterface(bytes4 interfaceId)
        public
        view
        override(ERC721, AccessControl, IERC165)
        returns (bool)
    {
        return interfaceId == bytes4(0x49064906) || super.supportsInterface(interfaceId);
    }

    // ------------------------------------------------------------------ internals

    function _create(address owner, bytes32 workflowHash, uint256 initialBudget) private returns (uint256 sessionId) {
        if (initialBudget > type(uint96).max) revert AmountTooLarge();
        sessionId = ++lastSessionId;
        Session storage s = _sessions[sessionId];
        s.owner = owner;
        s.state = SessionState.DRAFT;
        s.enteredAt = uint40(block.timestamp);
        s.budget = uint96(initialBudget);
        s.workflowHash = workflowHash;
        _mint(owner, sessionId);
        address account = Clones.cloneDeterministicWithImmutableArgs(
            accountImplementation, abi.encode(address(this), sessionId), bytes32(sessionId)
        );
        emit SessionCreated(sessionId, owner, workflowHash, initialBudget, account);
        emit SessionStateChanged(sessionId, SessionState.NONE, SessionState.DRAFT, TerminalReason.NONE, 0);
    }

    function _activate(
        uint256 sessionId,
        Session storage s,
        bytes32 workflowHash,
        address executor,
        AllowedCall[] calldata allowlist,
        bytes32 allowlistHash,
        bytes calldata policies
    ) private {
        _requireLive(sessionId, s, SessionState.DRAFT);
        if (!registry.isBonded(executor)) revert ExecutorNotBonded(executor);
        uint256 n = allowlist.length; // bounded by MAX_ALLOWLIST in hashAllowlist
        mapping(address => mapping(bytes4 => bool)) storage allowed = _allowed[sessionId];
        for (uint256 i = 0; i < n; ++i) {
            AllowedCall calldata call = allowlist[i];
            allowed[call.target][call.selector] = true;
            if (call.target == address(0) && call.selector == PROVED_MARKER) s.proved = true;
        }
        s.workflowHash = workflowHash;
        if (policies.length != 0) IPolicyAccount(accountOf(sessionId)).commitPolicies(policies);
        emit SessionActivated(sessionId, workflowHash, allowlistHash, n);
        _assign(sessionId, s, executor);
        _transition(sessionId, s, SessionState.DRAFT, SessionState.ACTIVE, TerminalReason.NONE);
    }

    function _assign(uint256 sessionId, Session storage s, address executor) private {
        uint24 epoch = s.epoch + 1;
        s.executor = executor;
        s.epoch = epoch;
        emit ExecutorAssigned(sessionId, executor, epoch);
        emit MetadataUpdate(sessionId);
    }

    function _addBudget(uint256 sessionId, Session storage s, uint256 amount) private {
        _requireLive(sessionId, s, SessionState.ACTIVE);
        if (amount == 0) revert ZeroAmount();
        uint256 budget = uint256(s.budget) + amount;
        if (budget > type(uint96).max) revert AmountTooLarge();
        s.budget = uint96(budget);
        emit BudgetAdded(sessionId, s.owner, amount, budget);
        emit MetadataUpdate(sessionId);
    }

    /// @dev Anchor the final checkpoint (see FinalAnchor) and the archived log; emits SessionFinalized.
    function _anchorFinal(uint256 sessionId, Session storage s, FinalAnchor calldata fin) private {
        uint64 last = s.lastSeq;
        if (fin.seq < last) revert FinalCheckpointBehind(sessionId, last, fin.seq);
        bytes32 commitment;
        if (fin.seq == last) {
            commitment = s.checkpointHash;
            if (fin.cid.length != 0 && keccak256(abi.encode(keccak256(fin.cid), fin.stateRoot)) != commitment) {
                revert FinalCheckpointMismatch(sessionId, fin.seq);
            }
        } else {
            bytes32 digest = _hashTypedDataV4(
                keccak256(abi.encode(CHECKPOINT_TYPEHASH, sessionId, fin.seq, fin.stateRoot, fin.prevRoot))
            );
            (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(digest, fin.executorSignature);
            uint32 epoch = s.epoch;
            if (err != ECDSA.RecoverError.NoError || signer != s.executor) {
                revert NotAssignedExecutor(sessionId, signer, epoch);
            }
            commitment = keccak256(abi.encode(keccak256(fin.cid), fin.stateRoot));
            s.lastSeq = fin.seq;
            s.checkpointHash = commitment;
            emit CheckpointAnchored(block.chainid, sessionId, fin.seq, signer, epoch, fin.stateRoot, fin.cid);
        }
        emit SessionFinalized(sessionId, fin.seq, commitment, fin.logCid, fin.arweaveTx);
    }

    /// @dev Final transition: record it, refund the escrow, burn the NFT (effects), then transfer (interaction).
    function _finish(uint256 sessionId, Session storage s, SessionState to, TerminalReason reason) private {
        _transition(sessionId, s, s.state, to, reason);
        uint256 refund = s.budget;
        address owner = s.owner;
        s.budget = 0;
        delete _tokenURIs[sessionId];
        _burn(sessionId);
        emit BudgetRefunded(sessionId, owner, refund);
        if (refund > 0) agpt.safeTransfer(owner, refund);
    }

    function _transition(
        uint256 sessionId,
        Session storage s,
        SessionState from,
        SessionState to,
        TerminalReason reason
    ) private {
        uint40 now_ = uint40(block.timestamp);
        uint40 activeUsed = s.activeUsed;
        if (from == SessionState.ACTIVE) {
            activeUsed += now_ - s.enteredAt;
            s.activeUsed = activeUsed;
        }
        s.state = to;
        s.reason = reason;
        s.enteredAt = now_;
        emit SessionStateChanged(sessionId, from, to, reason, activeUsed);
        emit MetadataUpdate(sessionId);
    }

    function _validateAction(address caller, uint256 sessionId, address target, bytes calldata data) private view {
        Session storage s = _existing(sessionId);
        _requireLive(sessionId, s, SessionState.ACTIVE);
        if (caller != s.owner && caller != s.executor) revert NotOwnerOrExecutor(sessionId, caller);
        bytes4 selector = data.length >= 4 ? bytes4(data[:4]) : bytes4(0);
        if (!_allowed[sessionId][target][selector]) revert ActionNotAllowed(sessionId, target, selector);
    }

    function _useSignature(address owner, bytes32 structHash, uint256 nonce, uint256 deadline, bytes calldata sig)
        private
    {
        if (block.timestamp > deadline) revert SignatureExpired(deadline);
        if (!SignatureChecker.isValidSignatureNowCalldata(owner, _hashTypedDataV4(structHash), sig)) {
            revert InvalidSignature();
        }
        _useCheckedNonce(owner, nonce);
    }

    /// @dev Pull AGPT from `from`, first applying its permit if one is given. A failing permit is ignored
    ///      (someone may have front-run it); the transfer then fails unless the allowance is already there.
    function _pull(address from, uint256 amount, Permit calldata permit) private {
        if (permit.deadline != 0) {
            try IERC20Permit(address(agpt)).permit(from, address(this), amount, permit.deadline, permit.v, permit.r, permit.s) {}
                catch {}
        }
        agpt.safeTransferFrom(from, address(this), amount);
    }

    function _existing(uint256 sessionId) private view returns (Session storage s) {
        s = _sessions[sessionId];
        if (s.state == SessionState.NONE) revert SessionNotFound(sessionId);
    }

    function _requireNotFinal(uint256 sessionId, Session storage s) private view returns (SessionState st) {
        st = s.state;
        if (st == SessionState.COMPLETED || st == SessionState.TERMINATED) revert InvalidState(sessionId, st);
    }

    function _requireLive(uint256 sessionId, Session storage s, SessionState expected) private view {
        SessionState st = s.state;
        if (st != expected) revert InvalidState(sessionId, st);
        _requireBeforeDeadline(sessionId, s, st);
    }

    function _requireBeforeDeadline(uint256 sessionId, Session storage s, SessionState st) private view {
        uint256 deadline = _deadline(s, st);
        if (block.timestamp >= deadline) revert DeadlinePassed(sessionId, deadline);
    }

    function _deadline(Session storage s, SessionState st) private view returns (uint256) {
        if (st == SessionState.DRAFT) return uint256(s.enteredAt) + draftDuration;
        if (st == SessionState.ACTIVE) return uint256(s.enteredAt) + activeDuration - s.activeUsed;
        return uint256(s.enteredAt) + pausedDuration;
    }

    /// @dev Keeps `Session.owner` in step with NFT transfers; the burn leaves the last owner recorded.
    function _update(address to, uint256 tokenId, address auth) internal override returns (address from) {
        from = super._update(to, tokenId, auth);
        if (from != address(0) && to != address(0)) _sessions[tokenId].owner = to;
    }
}
