// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title Test token for local chains (devnet, tests).
/// @notice Worth nothing: anyone may mint up to MAX_MINT per call, as a faucet. On a real
/// network the daemon uses an existing ERC-20 by address instead.
contract TestToken is ERC20 {
    uint256 public constant MAX_MINT = 1_000_000 ether;

    error MintTooLarge(uint256 amount, uint256 max);

    constructor() ERC20("Yagna Test Token", "tYGN") {}

    function mint(address to, uint256 amount) external {
        if (amount > MAX_MINT) revert MintTooLarge(amount, MAX_MINT);
        _mint(to, amount);
    }
}
