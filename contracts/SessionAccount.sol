// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Clones} from "@openzeppelin/contracts/proxy/Clones.sol";
import {IERC721Receiver} from "@openzeppelin/contracts/token/ERC721/IERC721Receiver.sol";

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
/// @dev Being a minimal proxy, ETH sent with a 2300-gas stipend (Solidity `transfer`, e.g. WETH9.withdraw)
///      does not arrive: unwrap WETH through a router that forwards with `call` instead.
contract SessionAccount is IERC721Receiver {
    event Executed(
        uint256 indexed sessionId, address indexed caller, address indexed target, uint256 value, bytes4 selector
    );

    error NotAClone();

    receive() external payable {}

    /// @notice Call `target` with `value` wei and `data`, if the factory's guard allows it; bubbles reverts.
    function execute(address target, uint256 value, bytes calldata data)
        external
        payable
        returns (bytes memory result)
    {
        (address factory_, uint256 sessionId_) = _args();
        ISessionGuard(factory_).checkAccountCall(msg.sender, sessionId_, target, data);
        bytes4 selector = data.length >= 4 ? bytes4(data[:4]) : bytes4(0);
        emit Executed(sessionId_, msg.sender, target, value, selector);
        bool ok;
        (ok, result) = target.call{value: value}(data);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(result, 0x20), mload(result))
            }
        }
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
