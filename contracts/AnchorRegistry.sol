// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/// @title AnchorRegistry — checkpoint anchors of sessions that live on another (home) chain.
/// @notice A session may anchor on several chains (docs/design.md §2, cross-chain state sync). On its home chain
///         the SessionFactory anchors; on every secondary chain this contract does, keyed by
///         (homeChainId, sessionId). The oracle authorises one writer per session at a time; each grant or
///         revoke bumps the session's epoch so a fenced writer's anchors revert. Sequence numbers are
///         strictly increasing and the event has the factory's shape, so one indexer decoder serves both.
contract AnchorRegistry is AccessControl {
    bytes32 public constant ORACLE_ROLE = keccak256("ORACLE_ROLE");

    struct Stream {
        address writer;
        uint64 lastSeq;
        uint32 epoch;
        bytes32 checkpointHash; // keccak256(abi.encode(keccak256(cid), stateRoot)), as in the factory
    }

    mapping(uint256 homeChainId => mapping(uint256 sessionId => Stream)) private _streams;

    event WriterGranted(uint256 indexed homeChainId, uint256 indexed sessionId, address indexed writer, uint32 epoch);
    event WriterRevoked(uint256 indexed homeChainId, uint256 indexed sessionId, address indexed writer, uint32 epoch);
    event CheckpointAnchored(
        uint256 indexed homeChainId,
        uint256 indexed sessionId,
        uint64 indexed seq,
        address writer,
        uint32 epoch,
        bytes32 stateRoot,
        bytes cid
    );

    error NotAuthorizedWriter(uint256 homeChainId, uint256 sessionId, address caller, uint32 epoch);
    error NonIncreasingSeq(uint256 sessionId, uint64 lastSeq, uint64 seq);
    error ZeroAddress();

    constructor(address admin) {
        if (admin == address(0)) revert ZeroAddress();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// @notice Make `writer` the session's only writer (replacing any previous one); bumps the epoch.
    function grantWriter(uint256 homeChainId, uint256 sessionId, address writer) external onlyRole(ORACLE_ROLE) {
        if (writer == address(0)) revert ZeroAddress();
        Stream storage st = _streams[homeChainId][sessionId];
        uint32 epoch = st.epoch + 1;
        st.writer = writer;
        st.epoch = epoch;
        emit WriterGranted(homeChainId, sessionId, writer, epoch);
    }

    /// @notice Remove the session's writer; bumps the epoch.
    function revokeWriter(uint256 homeChainId, uint256 sessionId) external onlyRole(ORACLE_ROLE) {
        Stream storage st = _streams[homeChainId][sessionId];
        address writer = st.writer;
        uint32 epoch = st.epoch + 1;
        st.writer = address(0);
        st.epoch = epoch;
        emit WriterRevoked(homeChainId, sessionId, writer, epoch);
    }

    function anchorCheckpoint(uint256 homeChainId, uint256 sessionId, uint64 seq, bytes calldata cid, bytes32 stateRoot)
        external
    {
        Stream storage st = _streams[homeChainId][sessionId];
        uint32 epoch = st.epoch;
        if (msg.sender != st.writer) revert NotAuthorizedWriter(homeChainId, sessionId, msg.sender, epoch);
        uint64 last = st.lastSeq;
        if (seq <= last) revert NonIncreasingSeq(sessionId, last, seq);
        st.lastSeq = seq;
        st.checkpointHash = keccak256(abi.encode(keccak256(cid), stateRoot));
        emit CheckpointAnchored(homeChainId, sessionId, seq, msg.sender, epoch, stateRoot, cid);
    }

    function streamOf(uint256 homeChainId, uint256 sessionId)
        external
        view
        returns (address writer, uint32 epoch, uint64 lastSeq, bytes32 checkpointHash)
    {
        Stream storage st = _streams[homeChainId][sessionId];
        return (st.writer, st.epoch, st.lastSeq, st.checkpointHash);
    }
}
