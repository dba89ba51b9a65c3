// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @title DemoStablecoin — the treasury demo's stablecoin on local chains (never deploy with value).
/// @notice A plain mintable ERC-20 with 18 decimals, so the demo's Uniswap V2 pool prices ETH in "dUSD"
///         without decimal conversions. AGPT cannot play this role: it is the sessions' budget token.
contract DemoStablecoin is ERC20, Ownable {
    constructor(address owner_) ERC20("Demo USD", "dUSD") Ownable(owner_) {}

    function mint(address to, uint256 amount) external onlyOwner {
        _mint(to, amount);
    }
}
