// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";

/// @title Unidirectional payment channels in one ERC-20 token.
/// @notice A payer locks a deposit for a payee until an expiry. Off chain the payer signs
/// vouchers (EIP-712: chain id, this contract, channel id, cumulative amount), each one
/// superseding the last. The payee cashes the best voucher with `redeem` (the channel stays
/// open) or `close` (the rest goes back to the payer); after the expiry the payer takes back
/// what was not redeemed with `timeout`. A protocol fee in basis points of every payment to the
/// payee goes to `feeRecipient`, both fixed at deployment. State changes come before any token
/// transfer (checks-effects-interactions); signatures with a high s are refused (OpenZeppelin
/// ECDSA). Tokens that charge a fee on transfer or rebase are not supported.
contract PaymentChannels is EIP712 {
    using SafeERC20 for IERC20;

    struct Channel {
        address payer;
        uint64 expiry;
        address payee;
        uint256 deposit;
        uint256 redeemed;
    }

    bytes32 public constant VOUCHER_TYPEHASH = keccak256("Voucher(bytes32 channelId,uint256 cumulativeAmount)");
    uint16 public constant MAX_FEE_BPS = 5_000;

    IERC20 public immutable token;
    address public immutable feeRecipient;
    uint16 public immutable feeBps;

    mapping(bytes32 => Channel) public channels;
    mapping(address => uint256) public nonces;

    event Opened(bytes32 indexed id, address indexed payer, address indexed payee, uint256 amount, uint64 expiry);
    event ToppedUp(bytes32 indexed id, uint256 amount, uint256 deposit, uint64 expiry);
    event Redeemed(bytes32 indexed id, uint256 cumulativeAmount, uint256 paid, uint256 fee);
    event Closed(bytes32 indexed id, uint256 cumulativeAmount, uint256 paid, uint256 fee, uint256 refunded);
    event TimedOut(bytes32 indexed id, uint256 refunded);

    error FeeTooHigh(uint16 feeBps);
    error NoFeeRecipient();
    error ZeroAmount();
    error BadPayee();
    error BadExpiry();
    error NoChannel();
    error NotPayer();
    error NotPayee();
    error NotIncreasing(uint256 cumulativeAmount, uint256 redeemed);
    error BadSignature();
    error NotExpired(uint64 expiry);

    constructor(IERC20 token_, address feeRecipient_, uint16 feeBps_) EIP712("PaymentChannels", "1") {
        if (feeBps_ > MAX_FEE_BPS) revert FeeTooHigh(feeBps_);
        if (feeBps_ > 0 && feeRecipient_ == address(0)) revert NoFeeRecipient();
        token = token_;
        feeRecipient = feeRecipient_;
        feeBps = feeBps_;
    }

    /// @notice Lock `amount` for `payee` until `expiry` (unix seconds); pulls the deposit
    /// (approve this contract first). The id is keccak(chain id, this, payer, payee, payer nonce).
    function open(address payee, uint256 amount, uint64 expiry) external returns (bytes32 id) {
        if (amount == 0) revert ZeroAmount();
        if (payee == address(0) || payee == msg.sender) revert BadPayee();
        if (expiry <= block.timestamp) revert BadExpiry();
        id = keccak256(abi.encode(block.chainid, address(this), msg.sender, payee, nonces[msg.sender]++));
        channels[id] = Channel({payer: msg.sender, expiry: expiry, payee: payee, deposit: amount, redeemed: 0});
        emit Opened(id, msg.sender, payee, amount, expiry);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice The payer adds `amount` (may be 0) and/or moves the expiry later (never earlier).
    function topUp(bytes32 id, uint256 amount, uint64 newExpiry) external {
        Channel storage c = channels[id];
        if (c.payer == address(0)) revert NoChannel();
        if (msg.sender != c.payer) revert NotPayer();
        if (newExpiry < c.expiry) revert BadExpiry();
        c.deposit += amount;
        c.expiry = newExpiry;
        emit ToppedUp(id, amount, c.deposit, newExpiry);
        if (amount > 0) token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice The payee cashes a voucher for `cumulativeAmount` (capped at the deposit); the
    /// channel stays open for later vouchers.
    function redeem(bytes32 id, uint256 cumulativeAmount, bytes calldata signature) external {
        Channel storage c = channels[id];
        if (c.payer == address(0)) revert NoChannel();
        if (msg.sender != c.payee) revert NotPayee();
        uint256 capped = cumulativeAmount < c.deposit ? cumulativeAmount : c.deposit;
        if (capped <= c.redeemed) revert NotIncreasing(cumulativeAmount, c.redeemed);
        _checkVoucher(id, cumulativeAmount, signature, c.payer);
        uint256 amount = capped - c.redeemed;
        c.redeemed = capped;
        (uint256 paid, uint256 fee) = _split(amount);
        emit Redeemed(id, cumulativeAmount, paid, fee);
        _pay(c.payee, paid, fee);
    }

    /// @notice The payee closes the channel: cashes a voucher above what was redeemed (or none:
    /// an empty signature with `cumulativeAmount` not above it) and the rest goes back to the payer.
    function close(bytes32 id, uint256 cumulativeAmount, bytes calldata signature) external {
        Channel memory c = channels[id];
        if (c.payer == address(0)) revert NoChannel();
        if (msg.sender != c.payee) revert NotPayee();
        uint256 capped = cumulativeAmount < c.deposit ? cumulativeAmount : c.deposit;
        uint256 amount;
        if (capped > c.redeemed) {
            _checkVoucher(id, cumulativeAmount, signature, c.payer);
            amount = capped - c.redeemed;
        } else {
            capped = c.redeemed;
        }
        uint256 refund = c.deposit - capped;
        delete channels[id];
        (uint256 paid, uint256 fee) = _split(amount);
        emit Closed(id, cumulativeAmount, paid, fee, refund);
        _pay(c.payee, paid, fee);
        if (refund > 0) token.safeTransfer(c.payer, refund);
    }

    /// @notice After the expiry, what was not redeemed goes back to the payer (anyone may call).
    function timeout(bytes32 id) external {
        Channel memory c = channels[id];
        if (c.payer == address(0)) revert NoChannel();
        if (block.timestamp < c.expiry) revert NotExpired(c.expiry);
        uint256 refund = c.deposit - c.redeemed;
        delete channels[id];
        emit TimedOut(id, refund);
        if (refund > 0) token.safeTransfer(c.payer, refund);
    }

    /// @notice The EIP-712 digest a voucher's signature signs.
    function voucherDigest(bytes32 id, uint256 cumulativeAmount) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(VOUCHER_TYPEHASH, id, cumulativeAmount)));
    }

    function _checkVoucher(bytes32 id, uint256 cumulativeAmount, bytes calldata signature, address payer) private view {
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(voucherDigest(id, cumulativeAmount), signature);
        if (err != ECDSA.RecoverError.NoError || signer != payer) revert BadSignature();
    }

    function _split(uint256 amount) private view returns (uint256 paid, uint256 fee) {
        fee = amount * feeBps / 10_000;
        paid = amount - fee;
    }

    function _pay(address payee, uint256 paid, uint256 fee) private {
        if (fee > 0) token.safeTransfer(feeRecipient, fee);
        if (paid > 0) token.safeTransfer(payee, paid);
    }
}
