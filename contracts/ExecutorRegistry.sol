// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ERC20Burnable} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Burnable.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/// @title ExecutorRegistry — AGPT bonds that make executors accountable.
/// @notice An executor bonds AGPT; the SessionFactory only assigns executors whose active bond is at least
///         `minBond`. Withdrawing takes two steps separated by `unbondingDelay`, and stake that is waiting
///         to unbond can still be slashed, so an executor cannot outrun a penalty.
///         Penalties (the recovery protocol): the oracle slashes 15% (1500 bps) to a beneficiary for a false
///         recovery claim and burns 5% (500 bps) for data loss. Each penalty carries its evidence (a text
///         naming session, checkpoint and reason) in its event, and one piece of evidence is penalised at
///         most once: a repeated claim reverts with AlreadyPenalized.
contract ExecutorRegistry is AccessControl {
    using SafeERC20 for IERC20;

    bytes32 public constant ORACLE_ROLE = keccak256("ORACLE_ROLE");
    uint16 public constant FALSE_RECOVERY_SLASH_BPS = 1500;
    uint16 public constant DATA_LOSS_BURN_BPS = 500;
    uint16 internal constant _BPS = 10_000;

    struct Bond {
        uint128 active; // counts towards isBonded
        uint128 unbonding; // requested for withdrawal, still slashable
        uint64 unlockAt; // when `unbonding` may be withdrawn
    }

    IERC20 public immutable token;
    uint256 public immutable minBond;
    uint64 public immutable unbondingDelay;

    mapping(address executor => Bond) private _bonds;
    mapping(bytes32 evidenceHash => bool) public penalized;

    event Bonded(address indexed executor, uint256 amount, uint256 activeBond);
    event UnbondRequested(address indexed executor, uint256 amount, uint256 activeBond, uint64 unlockAt);
    event Withdrawn(address indexed executor, uint256 amount);
    event Slashed(
        address indexed executor,
        uint16 bps,
        uint256 amount,
        address indexed beneficiary,
        bytes32 indexed evidenceHash,
        string evidence
    );
    event Burned(address indexed executor, uint16 bps, uint256 amount, bytes32 indexed evidenceHash, string evidence);

    error ZeroAmount();
    error InsufficientBond(uint256 requested, uint256 available);
    error NothingToWithdraw();
    error UnbondingNotElapsed(uint64 unlockAt);
    error InvalidBps(uint16 bps);
    error ZeroAddress();
    error AmountTooLarge();
    error AlreadyPenalized(bytes32 evidenceHash);
    error EmptyEvidence();

    constructor(IERC20 token_, uint256 minBond_, uint64 unbondingDelay_, address admin) {
        if (address(token_) == address(0) || admin == address(0)) revert ZeroAddress();
        token = token_;
        minBond = minBond_;
        unbondingDelay = unbondingDelay_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// @notice Add `amount` AGPT (pulled from the caller, who must have approved it) to the caller's bond.
    function bond(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        Bond storage b = _bonds[msg.sender];
        uint256 newActive = uint256(b.active) + amount;
        if (newActive > type(uint128).max) revert AmountTooLarge();
        b.active = uint128(newActive);
        emit Bonded(msg.sender, amount, newActive);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice Move `amount` from the active bond to unbonding; restarts the delay for the whole unbonding sum.
    function requestUnbond(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        Bond storage b = _bonds[msg.sender];
        if (amount > b.active) revert InsufficientBond(amount, b.active);
        b.active -= uint128(amount);
        b.unbonding += uint128(amount);
        uint64 unlockAt = uint64(block.timestamp) + unbondingDelay;
        b.unlockAt = unlockAt;
        emit UnbondRequested(msg.sender, amount, b.active, unlockAt);
    }

    /// @notice Withdraw everything that has finished unbonding.
    function withdraw() external {
        Bond storage b = _bonds[msg.sender];
        uint256 amount = b.unbonding;
        if (amount == 0) revert NothingToWithdraw();
        if (block.timestamp < b.unlockAt) revert UnbondingNotElapsed(b.unlockAt);
        b.unbonding = 0;
        b.unlockAt = 0;
        emit Withdrawn(msg.sender, amount);
        token.safeTransfer(msg.sender, amount);
    }

    /// @notice Slash `bps` of the executor's total stake (active + unbonding) to `beneficiary`, for `evidence`.
    function slash(address executor, uint16 bps, address beneficiary, string calldata evidence)
        external
        onlyRole(ORACLE_ROLE)
        returns (uint256 amount)
    {
        if (beneficiary == address(0)) revert ZeroAddress();
        bytes32 evidenceHash = _useEvidence(evidence);
        amount = _take(executor, bps);
        emit Slashed(executor, bps, amount, beneficiary, evidenceHash, evidence);
        if (amount > 0) token.safeTransfer(beneficiary, amount);
    }

    /// @notice Burn `bps` of the executor's total stake (active + unbonding), for `evidence`.
    function burn(address executor, uint16 bps, string calldata evidence)
        external
        onlyRole(ORACLE_ROLE)
        returns (uint256 amount)
    {
        bytes32 evidenceHash = _useEvidence(evidence);
        amount = _take(executor, bps);
        emit Burned(executor, bps, amount, evidenceHash, evidence);
        if (amount > 0) ERC20Burnable(address(token)).burn(amount);
    }

    /// @notice True when the executor's active (not unbonding) stake is at least `minBond`.
    function isBonded(address executor) external view returns (bool) {
        uint256 active = _bonds[executor].active;
        return active > 0 && active >= minBond;
    }

    function bondOf(address executor) external view returns (uint256 active, uint256 unbonding, uint64 unlockAt) {
        Bond storage b = _bonds[executor];
        return (b.active, b.unbonding, b.unlockAt);
    }

    function _useEvidence(string calldata evidence) private returns (bytes32 evidenceHash) {
        if (bytes(evidence).length == 0) revert EmptyEvidence();
        evidenceHash = keccak256(bytes(evidence));
        if (penalized[evidenceHash]) revert AlreadyPenalized(evidenceHash);
        penalized[evidenceHash] = true;
    }

    /// @dev Takes the penalty from the active bond first, then from unbonding stake.
    function _take(address executor, uint16 bps) private returns (uint256 amount) {
        if (bps == 0 || bps > _BPS) revert InvalidBps(bps);
        Bond storage b = _bonds[executor];
        uint256 active = b.active;
        uint256 unbonding = b.unbonding;
        amount = ((active + unbonding) * bps) / _BPS;
        if (amount <= active) {
            b.active = uint128(active - amount);
        } else {
            b.active = 0;
            b.unbonding = uint128(unbonding - (amount - active));
        }
    }
}
