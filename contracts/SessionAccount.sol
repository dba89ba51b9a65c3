// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Clones} from "@openzeppelin/contracts/proxy/Clones.sol";
import {IERC721Receiver} from "@openzeppelin/contracts/token/ERC721/IERC721Receiver.sol";
import {BitMaps} from "@openzeppelin/contracts/utils/structs/BitMaps.sol";

/// @notice What an account asks its factory before every call.
interface ISessionGuard {
    function checkAccountCall(address caller, uint256 sessionId, address target, bytes calldata data) external view;
    function stateOf(uint256 sessionId) external view returns (uint8);
}

/// @title SessionAccount — the treasury of one session (ETH and tokens).
/// @notice Deployed by SessionFactory.createSession as an OpenZeppelin clone with immutable args
///         `abi.encode(factory, sessionId)` at a CREATE2 address (`SessionFactory.accountOf`). It holds no
///         storage: every call is authorised by the factory's guard, so reassigning the executor or ending
///         the session takes effect here at once. While ACTIVE the assigned executor (or the owner) may call
///         allowlisted (target, selector) pairs; in DRAFT and after the end the owner may move funds freely.
///
///         Exactly-once: every call names the task step it performs, `(taskSeq, step)`, and a step runs at
///         most once: a replay — a crashed executor's retry, or another executor after a takeover, signing
///         with another key and so another nonce — reverts with AlreadyExecuted. The owner's own calls name
///         a step too (any unused one, e.g. taskSeq 0).
///
///         Action policies (the "valid instruction" check made real; the shape of ERC-7715 permissions):
///         the owner's activation may commit a `Policy` per allowlisted (target, selector), which every
///         call of that pair must then meet while the session is ACTIVE: the recipient (an ABI word of the
///         call) among the listed ones (address(0) standing for this account), at most `maxPerCall` per call
///         of the amount (an ABI word, or the call's native value) and `maxValue` wei of native value, at
///         most `maxPerPeriod` over each `period` seconds (a period starts with the first call after the
///         previous one ended), at most `maxCalls` calls in all, none at or after `expiresAt`. A call that
///         breaks one reverts with PolicyViolation naming the rule. Pairs without a policy are limited by the
///         allowlist alone, as before; the owner's own calls in DRAFT and after the end are not limited.
/// @dev Being a minimal proxy, ETH sent with a 2300-gas stipend (Solidity `transfer`, e.g. WETH9.withdraw)
///      does not arrive: unwrap WETH through a router that forwards with `call` instead.
contract SessionAccount is IERC721Receiver {
    using BitMaps for BitMaps.BitMap;

    /// @notice Steps a task may take on chain: `step` is below this.
    uint256 public constant MAX_STEPS = 16;

    /// @dev Bit `taskSeq * MAX_STEPS + step`: 16 consecutive tasks share one storage word, so the marker costs
    ///      a fresh slot once per 16 tasks and a warm-up write otherwise. The clone's own storage.
    BitMaps.BitMap private _done;

    event Executed(
        uint256 indexed sessionId,
        address indexed caller,
        address indexed target,
        uint256 value,
        bytes4 selector,
        uint64 taskSeq,
        uint8 step
    );

    /// @notice A committed limit on one (target, selector); see the contract's notice.
    struct Policy {
        address target;
        bytes4 selector;
        uint8 recipientArg; // ABI word (0-based, after the selector) holding the recipient; NO_ARG: no rule
        uint8 amountArg; // ABI word holding the amount; NO_ARG: the call's native value is its amount
        uint32 maxCalls;
        uint40 expiresAt; // 0: never
        uint40 period; // seconds; 0: no per-period limit
        uint256 maxPerCall;
        uint256 maxPerPeriod;
        uint256 maxValue; // native wei per call
        address[] recipients; // address(0): this account
    }

    /// @dev A policy as stored, with what its calls used so far.
    struct Rule {
        bool exists;
        uint8 recipientArg;
        uint8 amountArg;
        uint32 maxCalls;
        uint40 expiresAt;
        uint40 period;
        uint32 calls;
        uint40 periodStart;
        uint256 maxPerCall;
        uint256 maxPerPeriod;
        uint256 maxValue;
        uint256 spentInPeriod;
    }

    uint8 public constant NO_ARG = type(uint8).max;
    uint8 private constant ACTIVE = 2; // SessionFactory.SessionState.ACTIVE

    mapping(bytes24 key => Rule) private _rules;
    mapping(bytes24 key => mapping(address recipient => bool)) private _recipients;

    event PoliciesCommitted(uint256 indexed sessionId, bytes32 policyHash, uint256 count);

    error NotAClone();
    error NotFactory(address caller);
    error PoliciesAlreadyCommitted(uint256 sessionId);
    error DuplicatePolicy(address target, bytes4 selector);
    error PolicyViolation(uint256 sessionId, address target, bytes4 selector, string rule);
    error AlreadyExecuted(uint256 sessionId, uint64 taskSeq, uint8 step);
    error StepOutOfRange(uint8 step);

    receive() external payable {}

    /// @notice Store the session's policies (abi-encoded `Policy[]`), once, from the factory's activation.
    function commitPolicies(bytes calldata encoded) external {
        (address factory_, uint256 sessionId_) = _args();
        if (msg.sender != factory_) revert NotFactory(msg.sender);
        Policy[] memory ps = abi.decode(encoded, (Policy[]));
        for (uint256 i = 0; i < ps.length; ++i) {
            Policy memory p = ps[i];
            bytes24 key = _key(p.target, p.selector);
            Rule storage r = _rules[key];
            if (r.exists) revert DuplicatePolicy(p.target, p.selector);
            r.exists = true;
            r.recipientArg = p.recipientArg;
            r.amountArg = p.amountArg;
            r.maxCalls = p.maxCalls;
            r.expiresAt = p.expiresAt;
            r.period = p.period;
            r.maxPerCall = p.maxPerCall;
            r.maxPerPeriod = p.maxPerPeriod;
            r.maxValue = p.maxValue;
            for (uint256 j = 0; j < p.recipients.length; ++j) {
                _recipients[key][p.recipients[j]] = true;
            }
        }
        emit PoliciesCommitted(sessionId_, keccak256(encoded), ps.length);
    }

    /// @notice As step `step` of task `taskSeq`, call `target` with `value` wei and `data`, if the factory's
    ///         guard allows it and that step has not run before; bubbles reverts (which undo the marker).
    function execute(uint64 taskSeq, uint8 step, address target, uint256 value, bytes calldata data)
        external
        payable
        returns (bytes memory result)
    {
        (address factory_, uint256 sessionId_) = _args();
        ISessionGuard(factory_).checkAccountCall(msg.sender, sessionId_, target, data);
        if (ISessionGuard(factory_).stateOf(sessionId_) == ACTIVE) _enforce(sessionId_, target, value, data);
        _markStep(sessionId_, taskSeq, step);
        emit Executed(sessionId_, msg.sender, target, value, data.length >= 4 ? bytes4(data[:4]) : bytes4(0), taskSeq, step);
        bool ok;
        (ok, result) = target.call{value: value}(data);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(result, 0x20), mload(result))
            }
        }
    }

    /// @notice Whether step `step` of task `taskSeq` has run through this account.
    function executed(uint64 taskSeq, uint8 step) external view returns (bool) {
        return step < MAX_STEPS && _done.get(uint256(taskSeq) * MAX_STEPS + step);
    }

    /// @notice The policy committed for (target, selector) and what its calls used (`exists` false: none).
    function policyOf(address target, bytes4 selector) external view returns (Rule memory) {
        return _rules[_key(target, selector)];
    }

    /// @notice Whether `recipient` (address(0): this account) is one a policy on (target, selector) allows.
    function recipientAllowed(address target, bytes4 selector, address recipient) external view returns (bool) {
        return _recipients[_key(target, selector)][recipient == address(this) ? address(0) : recipient];
    }

    function _enforce(uint256 sessionId_, address target, uint256 value, bytes calldata data) private {
        bytes4 selector = data.length >= 4 ? bytes4(data[:4]) : bytes4(0);
        bytes24 key = _key(target, selector);
        Rule storage r = _rules[key];
        if (!r.exists) return;
        if (r.expiresAt != 0 && block.timestamp >= r.expiresAt) {
            revert PolicyViolation(sessionId_, target, selector, "expires_at");
        }
        if (r.calls >= r.maxCalls) revert PolicyViolation(sessionId_, target, selector, "max_calls");
        r.calls += 1;
        if (value > r.maxValue) revert PolicyViolation(sessionId_, target, selector, "max_value");
        if (r.recipientArg != NO_ARG) {
            (bool found, uint256 word) = _word(data, r.recipientArg);
            address to = address(uint160(word));
            // (address(0) itself is no recipient: it stands for this account in the list)
            if (!found || word >> 160 != 0 || to == address(0) || !_recipients[key][to == address(this) ? address(0) : to])
            {
                revert PolicyViolation(sessionId_, target, selector, "recipients");
            }
        }
        uint256 amount = value;
        if (r.amountArg != NO_ARG) {
            bool found;
            (found, amount) = _word(data, r.amountArg);
            if (!found) revert PolicyViolation(sessionId_, target, selector, "amount_arg");
        }
        if (amount > r.maxPerCall) revert PolicyViolation(sessionId_, target, selector, "max_per_call");
        if (r.period != 0) {
            if (block.timestamp >= uint256(r.periodStart) + r.period) {
                r.periodStart = uint40(block.timestamp);
                r.spentInPeriod = 0;
            }
            uint256 spent = r.spentInPeriod + amount;
            if (spent > r.maxPerPeriod) revert PolicyViolation(sessionId_, target, selector, "max_per_period");
            r.spentInPeriod = spent;
        }
    }

    /// @dev ABI word `i` of a call's arguments (after the selector); false when the data is too short.
    function _word(bytes calldata data, uint8 i) private pure returns (bool, uint256) {
        uint256 start = 4 + uint256(i) * 32;
        if (data.length < start + 32) return (false, 0);
        return (true, uint256(bytes32(data[start:start + 32])));
    }

    function _key(address target, bytes4 selector) private pure returns (bytes24) {
        return bytes24(bytes20(target)) | (bytes24(selector) >> 160);
    }

    function _markStep(uint256 sessionId_, uint64 taskSeq, uint8 step) private {
        if (step >= MAX_STEPS) revert StepOutOfRange(step);
        uint256 key = uint256(taskSeq) * MAX_STEPS + step;
        if (_done.get(key)) revert AlreadyExecuted(sessionId_, taskSeq, step);
        _done.set(key);
    }

    function factory() external view returns (address factory_) {
        (factory_,) = _args();
    }

    function sessionId() external view returns (uint256 sessionId_) {
        (, sessionId_) = _args();
    }

    function onERC721Received(address, address, uint256, bytes calldata) external pure returns (bytes4) {
        return IERC721Receiver.onERC721Received.selector;
    }

    function _args() private view returns (address factory_, uint256 sessionId_) {
        bytes memory args = Clones.fetchCloneArgs(address(this));
        if (args.length != 64) revert NotAClone();
        (factory_, sessionId_) = abi.decode(args, (address, uint256));
    }
}
