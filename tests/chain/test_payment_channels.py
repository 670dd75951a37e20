"""The PaymentChannels contract on a real local chain (anvil): open, topUp, redeem, close, timeout,
the protocol fee, and every refusal (issue 14)."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi import encode
from eth_utils import keccak

from payments.evm import voucher
from payments.evm.voucher import SECP256K1_N, VoucherDomain, VoucherError

from .evm import Chain, Reverted, dev_keys

TOKEN = 10**18
FEE_BPS = 200  # 2 %, as the devnet deploys it


@pytest.fixture
def setup(chain: Chain) -> dict[str, Any]:
    deployer, payer, payee, fee, stranger = dev_keys(5)
    token = chain.deploy("TestToken", deployer)
    channels = chain.deploy("PaymentChannels", deployer, token.address, chain.address(fee), FEE_BPS)
    chain.send(token.functions.mint(chain.address(payer), 1_000 * TOKEN), payer)
    chain.send(token.functions.approve(channels.address, 2**256 - 1), payer)
    domain = VoucherDomain(chain.w3.eth.chain_id, channels.address)
    return {"token": token, "channels": channels, "payer": payer, "payee": payee, "fee": fee,
            "stranger": stranger, "deployer": deployer, "domain": domain}


def _open(chain: Chain, s: dict[str, Any], amount: int, expiry_in: int = 3600) -> bytes:
    payer, payee, channels = s["payer"], s["payee"], s["channels"]
    nonce = channels.functions.nonces(chain.address(payer)).call()
    receipt = chain.send(channels.functions.open(chain.address(payee), amount, chain.now() + expiry_in), payer)
    (event,) = channels.events.Opened().process_receipt(receipt, errors=__import__("web3").logs.DISCARD)
    cid = bytes(event["args"]["id"])
    expected = keccak(encode(["uint256", "address", "address", "address", "uint256"],
                             [chain.w3.eth.chain_id, channels.address, chain.address(payer), chain.address(payee), nonce]))
    assert cid == expected
    return cid


def _balance(chain: Chain, s: dict[str, Any], who: str) -> int:
    return int(s["token"].functions.balanceOf(chain.address(s[who])).call())


def test_open_pulls_the_deposit_and_a_256_bit_amount_round_trips(chain: Chain, setup: dict[str, Any]) -> None:
    s = setup
    amount = 100 * TOKEN  # above 2^64 base units: what the old wire amounts could not carry
    assert amount > 2**64
    before = _balance(chain, s, "payer")
    cid = _open(chain, s, amount)
    payer, expiry, payee, deposit, redeemed = s["channels"].functions.channels(cid).call()
    assert (payer, payee, deposit, redeemed) == (chain.address(s["payer"]), chain.address(s["payee"]), amount, 0)
    assert _balance(chain, s, "payer") == before - amount
    assert s["token"].functions.balanceOf(s["channels"].address).call() == amount


def test_python_digest_and_signer_match_the_contract(chain: Chain, setup: dict[str, Any]) -> None:
    s = setup
    cid = _open(chain, s, 5 * TOKEN)
    amount = 3 * TOKEN + 7
    assert voucher.digest(s["domain"], cid, amount) == bytes(s["channels"].functions.voucherDigest(cid, amount).call())
    sig = voucher.sign(s["payer"], s["domain"], cid, amount)
    assert voucher.signer(s["domain"], cid, amount, sig) == chain.address(s["payer"])


def test_redeem_twice_then_close_splits_the_fee_and_refunds_the_rest(chain: Chain, setup: dict[str, Any]) -> None:
    s = setup
    deposit = 50 * TOKEN
    cid = _open(chain, s, deposit)
    payer_before = _balance(chain, s, "payer")
    for cumulative in (10 * TOKEN, 25 * TOKEN):
        sig = voucher.sign(s["payer"], s["domain"], cid, cumulative)
        chain.send(s["channels"].functions.redeem(cid, cumulative, sig), s["payee"])
    assert _balance(chain, s, "payee") == 25 * TOKEN * 98 // 100
    assert _balance(chain, s, "fee") == 25 * TOKEN * 2 // 100
    assert s["channels"].functions.channels(cid).call()[4] == 25 * TOKEN  # redeemed; still open
    sig = voucher.sign(s["payer"], s["domain"], cid, 30 * TOKEN)
    chain.send(s["channels"].functions.close(cid, 30 * TOKEN, sig), s["payee"])
    assert _balance(chain, s, "payee") == 30 * TOKEN * 98 // 100
    assert _balance(chain, s, "fee") == 30 * TOKEN * 2 // 100
    assert _balance(chain, s, "payer") == payer_before + 20 * TOKEN
    assert s["token"].functions.balanceOf(s["channels"].address).call() == 0
    with pytest.raises(Reverted, match="NoChannel"):  # after close
        chain.send(s["channels"].functions.redeem(cid, 40 * TOKEN, voucher.sign(s["payer"], s["domain"], cid, 40 * TOKEN)),
                   s["payee"])


def test_a_voucher_above_the_deposit_is_capped_and_close_without_a_new_voucher_refunds(
        chain: Chain, setup: dict[str, Any]) -> None:
    s = setup
    cid = _open(chain, s, 4 * TOKEN)
    chain.send(s["channels"].functions.redeem(cid, 9 * TOKEN, voucher.sign(s["payer"], s["domain"], cid, 9 * TOKEN)),
               s["payee"])
    assert s["channels"].functions.channels(cid).call()[4] == 4 * TOKEN
    cid2 = _open(chain, s, 4 * TOKEN)
    payer_before = _balance(chain, s, "payer")
    chain.send(s["channels"].functions.close(cid2, 0, b""), s["payee"])  # nothing earned: all back
    assert _balance(chain, s, "payer") == payer_before + 4 * TOKEN


def test_timeout_only_after_expiry_and_top_up_only_by_the_payer_forward(chain: Chain, setup: dict[str, Any]) -> None:
    s = setup
    cid = _open(chain, s, 6 * TOKEN, expiry_in=600)
    chain.send(s["channels"].functions.redeem(cid, 2 * TOKEN, voucher.sign(s["payer"], s["domain"], cid, 2 * TOKEN)),
               s["payee"])
    with pytest.raises(Reverted, match="NotExpired"):
        chain.send(s["channels"].functions.timeout(cid), s["payer"])
    expiry = s["channels"].functions.channels(cid).call()[1]
    with pytest.raises(Reverted, match="BadExpiry"):
        chain.send(s["channels"].functions.topUp(cid, TOKEN, expiry - 1), s["payer"])
    with pytest.raises(Reverted, match="NotPayer"):
        chain.send(s["channels"].functions.topUp(cid, 0, expiry + 600), s["stranger"])
    chain.send(s["channels"].functions.topUp(cid, TOKEN, expiry + 600), s["payer"])
    assert s["channels"].functions.channels(cid).call()[3] == 7 * TOKEN
    chain.increase_time(700)
    with pytest.raises(Reverted, match="NotExpired"):  # the top-up moved the expiry
        chain.send(s["channels"].functions.timeout(cid), s["payer"])
    chain.increase_time(600)
    before = _balance(chain, s, "payer")
    chain.send(s["channels"].functions.timeout(cid), s["stranger"])  # anyone may trigger it; the payer is refunded
    assert _balance(chain, s, "payer") == before + 5 * TOKEN
    with pytest.raises(Reverted, match="NoChannel"):
        chain.send(s["channels"].functions.timeout(cid), s["payer"])


def test_every_bad_voucher_is_refused(chain: Chain, setup: dict[str, Any]) -> None:
    s = setup
    channels, payer, payee, domain = s["channels"], s["payer"], s["payee"], s["domain"]
    cid = _open(chain, s, 10 * TOKEN)
    chain.send(channels.functions.redeem(cid, 3 * TOKEN, voucher.sign(payer, domain, cid, 3 * TOKEN)), payee)
    cases = {
        "NotIncreasing": voucher.sign(payer, domain, cid, 3 * TOKEN),  # stale (not above what was redeemed)
        "BadSignature": voucher.sign(s["stranger"], domain, cid, 5 * TOKEN),  # forged: another key
    }
    with pytest.raises(Reverted, match="NotIncreasing"):
        chain.send(channels.functions.redeem(cid, 3 * TOKEN, cases["NotIncreasing"]), payee)
    for bad in (
        cases["BadSignature"],
        voucher.sign(payer, VoucherDomain(domain.chain_id + 1, domain.contract), cid, 5 * TOKEN),  # other chain
        voucher.sign(payer, VoucherDomain(domain.chain_id, s["token"].address), cid, 5 * TOKEN),  # other contract
        voucher.sign(payer, domain, b"\x01" * 32, 5 * TOKEN),  # other channel
        voucher.sign(payer, domain, cid, 4 * TOKEN),  # another amount than the one claimed
        b"\x00" * 65,
    ):
        with pytest.raises(Reverted, match="BadSignature"):
            chain.send(channels.functions.redeem(cid, 5 * TOKEN, bad), payee)
    good = voucher.sign(payer, domain, cid, 5 * TOKEN)
    with pytest.raises(Reverted, match="NotPayee"):
        chain.send(channels.functions.redeem(cid, 5 * TOKEN, good), s["stranger"])
    # the same signature with s flipped to the upper half (and v flipped) recovers the same key
    # mathematically: refused on chain and by our own check
    r, sv, v = good[:32], int.from_bytes(good[32:64], "big"), good[64]
    high = r + (SECP256K1_N - sv).to_bytes(32, "big") + bytes([55 - v])
    with pytest.raises(Reverted, match="BadSignature"):
        chain.send(channels.functions.redeem(cid, 5 * TOKEN, high), payee)
    with pytest.raises(VoucherError, match="lower half"):
        voucher.signer(domain, cid, 5 * TOKEN, high)
    chain.send(channels.functions.redeem(cid, 5 * TOKEN, good), payee)


def test_the_fee_is_fixed_at_deployment_and_bounded(chain: Chain, setup: dict[str, Any]) -> None:
    s = setup
    with pytest.raises(Reverted, match="FeeTooHigh"):
        chain.deploy("PaymentChannels", s["deployer"], s["token"].address, chain.address(s["fee"]), 5_001)
    with pytest.raises(Reverted, match="NoFeeRecipient"):
        chain.deploy("PaymentChannels", s["deployer"], s["token"].address, "0x" + "00" * 20, 100)
    free = chain.deploy("PaymentChannels", s["deployer"], s["token"].address, "0x" + "00" * 20, 0)
    assert free.functions.feeBps().call() == 0
    burn = chain.deploy("PaymentChannels", s["deployer"], s["token"].address, "0x000000000000000000000000000000000000dEaD", 2_500)
    assert burn.functions.feeBps().call() == 2_500  # Render-style: a quarter to the burn address


def test_open_refuses_nonsense(chain: Chain, setup: dict[str, Any]) -> None:
    s = setup
    ch, payer = s["channels"], s["payer"]
    with pytest.raises(Reverted, match="ZeroAmount"):
        chain.send(ch.functions.open(chain.address(s["payee"]), 0, chain.now() + 60), payer)
    with pytest.raises(Reverted, match="BadPayee"):
        chain.send(ch.functions.open(chain.address(payer), TOKEN, chain.now() + 60), payer)
    with pytest.raises(Reverted, match="BadExpiry"):
        chain.send(ch.functions.open(chain.address(s["payee"]), TOKEN, chain.now() - 1), payer)


def test_the_fast_voucher_path_gives_eth_accounts_bytes() -> None:
    """digest/sign/signer are computed by hand (keccak + libsecp256k1): the same bytes as
    eth-account's typed-data signing, for many channels and amounts."""
    import secrets

    from eth_account import Account

    for i in range(50):
        key = secrets.token_bytes(31).rjust(32, b"\1")
        domain = voucher.VoucherDomain(1 + i, "0x" + secrets.token_hex(20))
        cid, amount = secrets.token_bytes(32), secrets.randbelow(2**256) if i % 2 else i
        msg = {"channelId": cid, "cumulativeAmount": amount}
        theirs = Account.sign_typed_data(key, domain.as_dict(), voucher.VOUCHER_TYPES, msg)
        assert voucher.sign(key, domain, cid, amount) == bytes(theirs.signature)
        assert voucher.signer(domain, cid, amount, bytes(theirs.signature)) == Account.from_key(key).address
