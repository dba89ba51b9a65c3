// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Clones} from "@openzeppelin/contracts/proxy/Clones.sol";
import {IERC721Receiver} from "@openzeppelin/contracts/token/ERC721/IERC721Receiver.sol";
import {BitMaps} from "@openzeppelin/contracts/utils/structs/BitMaps.sol";

/// @notice What an account asks its factory before every call.
interface ISessionGuard {
    function checkAccountCall(address caller, uint256 sessionId, address target, bytes calldata data) external view;
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

    error NotAClone();
    error AlreadyExecuted(uint256 sessionId, uint64 taskSeq, uint8 step);
    error StepOutOfRange(uint8 step);

    receive() external payable {}

    /// @notice As step `step` of task `taskSeq`, call `target` with `value` wei and `data`, if the factory's
    ///         guard allows it and that step has not run before; bubbles reverts (which undo the marker).
    function execute(uint64 taskSeq, uint8 step, address target, uint256 value, bytes calldata data)
        external
        payable
        returns (bytes memory result)
    {
        (address factory_, uint256 sessionId_) = _args();
        ISessionGuard(factory_).checkAccountCall(msg.sender, sessionId_, target, data);
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
