"""Payments on the in-memory network twin, real SQLite stores, the real Docker engine.

A provider and a requestor (market + exe-unit + payments, wired like the
daemon) sign an agreement with a 1 s debit-note interval; the requestor runs a
container for several intervals. The provider's earned amount equals the
requestor's spent amount and matches the agreed price times the usage; a
requestor that withholds payment is paused, then cut off; an attacker's
vouchers change nothing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from market.capacity import Capacity
from market.presets import Preset
from market.pricing import LinearPricing
from payments.voucher import ChannelTerms, sign_voucher
from yagna.activity_service import ActivityConfig, ActivityService
from yagna.core.identity import NodeKey
from yagna.core.money import parse_amount
from yagna.market_service import MarketConfig, MarketService
from yagna.market_service.requestor import DEFAULT_EXPIRATION_S  # noqa: F401 - documents the default lifetime
from yagna.net.errors import RemoteError
from yagna.net.memory import MemoryHub
from yagna.node import _connect_payments
from yagna.payment_service import PaymentConfig, PaymentService
from yagna.payment_service.protocol import PAYMENT, terms_from_bytes
from yagna.store import Store
from yagna.store.payment_repos import SqliteLedger

NET = "test-net"
ROOT = Path(__file__).resolve().parent.parent
PRICING = LinearPricing(start_fee=parse_amount("0.001"), per_cpu_sec=parse_amount("0.0001"),
                        per_duration_sec=parse_amount("0.00001"))
PRESET = Preset(name="small", threads=1, mem_gib=0.25, storage_gib=0.25, pricing=PRICING)
TERMS = {"golem.com.scheme.payu.debit-note.interval-sec?": 1, "golem.com.scheme.payu.payment-timeout-sec?": 2}


@pytest.fixture(scope="module")
def image_id() -> str:
    import subprocess

    from tests.test_activity_service import _docker

    _docker()
    out = subprocess.run(["bash", str(ROOT / "scripts" / "build-test-image.sh")], capture_output=True, text=True,
                         timeout=300, check=True)
    return out.stdout.strip().splitlines()[-1]


class Node:
    def __init__(self, key: NodeKey, net: Any, market: MarketService, activity: ActivityService,
                 payments: PaymentService) -> None:
        self.key, self.net, self.market, self.activity, self.payments = key, net, market, activity, payments


@pytest.fixture(scope="module")
def anvil() -> Any:
    from yagna.chain.anvil import Anvil

    with Anvil() as chain:
        yield chain


async def _chain_driver(stack: contextlib.AsyncExitStack, anvil: Any, key: NodeKey, store: Store,
                        deployed: tuple[str, str]) -> tuple[Any, Any]:
    import secrets

    from payments.evm import binding
    from yagna.chain.account import SettlementAccount
    from yagna.chain.driver import EvmDriver
    from yagna.payment_service.protocol import SettlementInfo

    account = SettlementAccount.from_key(secrets.token_bytes(31).rjust(32, b"\1"))
    driver = await EvmDriver.connect(rpc_url=anvil.rpc_url, account=account, token=deployed[0],
                                     contract=deployed[1], store=store)
    stack.push_async_callback(driver.aclose)
    await driver.ensure_gas(account.address)
    return driver, SettlementInfo(binding.make(key, account.private_key), driver.chain_id, driver.contract)


@contextlib.asynccontextmanager
async def network(tmp_path: Path, *, withhold: bool = False, anvil: Any = None,
                  fee_to: str | None = None) -> AsyncIterator[tuple[Node, Node, str]]:
    from exeunit.docker_runtime import DockerRuntime

    runtime = DockerRuntime(extra_labels={"network.yagna.test-session": os.environ["YAGNA_TEST_SESSION"]})
    hub = MemoryHub()
    async with contextlib.AsyncExitStack() as stack, trio.open_nursery() as nursery:
        nodes = {}
        deployed = None
        if anvil is not None:
            from tests.chain.evm import dev_keys
            from yagna.chain.channels import all_errors, deploy_local
            from yagna.chain.rpc import Rpc, TxSender

            rpc = Rpc(anvil.rpc_url)
            deployed = await deploy_local(TxSender(rpc, dev_keys(1)[0], errors=all_errors()),
                                          fee_recipient=fee_to or "0x000000000000000000000000000000000000dEaD",
                                          fee_bps=200)
            await rpc.aclose()
        for name, sells in (("prov", True), ("req", False)):
            key = NodeKey.generate()
            net = hub.node(key.node_id)
            store = await stack.enter_async_context(Store.open_ctx(tmp_path / f"{name}.db"))
            market = MarketService(key=key, config=MarketConfig(network_id=NET, provider=sells, requestor=not sells,
                                                                capacity=Capacity(2, 1.0, 10.0)),
                                   rr=net.rr, gossip=net.gossip, peers=net.peers, store=store)
            activity = ActivityService(node_id=key.node_id, config=ActivityConfig(
                network_id=NET, provider=sells, requestor=not sells, work_dir=tmp_path / name, agreement_check_s=0.2),
                rr=net.rr, store=store, runtime=runtime, key=key)
            driver, settlement = SqliteLedger(store), None
            if deployed is not None:
                driver, settlement = await _chain_driver(stack, anvil, key, store, deployed)
            payments = PaymentService(key=key, config=PaymentConfig(
                network_id=NET, provider=sells, requestor=not sells, tick_s=0.1, resend_s=0.3, settle_wait_s=2.0,
                withhold_payments=withhold and not sells), rr=net.rr, store=store, driver=driver,
                settlement=settlement)
            _connect_payments(market, activity, payments)
            for svc in (net.peers, market, activity, payments):
                await nursery.start(svc.run)
            nodes[name] = Node(key, net, market, activity, payments)
        prov, req = nodes["prov"], nodes["req"]
        await prov.market.provider.create_preset(PRESET)  # type: ignore[union-attr]
        with trio.fail_after(5):
            while len(req.market.directory.book) < 1:
                await trio.sleep(0.01)
        demand = await req.market.requestor.create_demand(TERMS, "")  # type: ignore[union-attr]
        result = await req.market.requestor.negotiate(demand.demand_id)  # type: ignore[union-attr]
        agreement_id = result["agreements"][0]["agreement_id"]
        try:
            yield prov, req, agreement_id
        finally:
            nursery.cancel_scope.cancel()


async def _both_closed(prov: Node, req: Node, agreement_id: str, seconds: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """Wait until both sides closed the agreement's channel; their status rows."""
    with trio.fail_after(seconds):
        while True:
            p = {r["agreement_id"]: r for r in (await prov.payments.status())["agreements"]}[agreement_id]
            r = {r["agreement_id"]: r for r in (await req.payments.status())["agreements"]}[agreement_id]
            if p["state"] == "closed" and r["state"] == "closed":
                return p, r
            await trio.sleep(0.1)


async def _run_for(req: Node, agreement_id: str, image_id: str, seconds: float) -> str:
    acts = req.activity.requestor
    assert acts is not None
    activity_id = (await acts.create(agreement_id))["activity_id"]
    batch = await acts.exec(activity_id, [{"deploy": {"image": image_id}}, {"start": {}},
                                          {"run": {"argv": ["sh", "-c", f"timeout {seconds} sh -c 'while :; do :; done'; true"]}}])
    await acts.wait(activity_id, batch["batch_id"], 60)
    return activity_id


async def test_no_deposit_no_work(tmp_path: Path, image_id: str) -> None:
    async with network(tmp_path) as (prov, req, agreement_id):
        from yagna.payment_service import PaymentRequired

        with pytest.raises(PaymentRequired) as exc:
            await req.activity.requestor.create(agreement_id)  # type: ignore[union-attr]
        assert exc.value.code == "insufficient-funds" and "payment fund" in str(exc.value)


async def test_paid_by_the_second_earned_equals_spent_equals_price_times_usage(tmp_path: Path, image_id: str) -> None:
    async with network(tmp_path) as (prov, req, agreement_id):
        await req.payments.fund(parse_amount("10"))
        await _run_for(req, agreement_id, image_id, 3.5)
        # Several 1 s intervals are paid while the activity lives (on a loaded machine the third
        # may come a moment after the command ended: the container still counts its duration).
        with trio.fail_after(10):
            while True:
                pstatus = await prov.payments.status()
                row = next(r for r in pstatus["agreements"] if r["agreement_id"] == agreement_id)
                if row["best_seq"] >= 3:
                    break
                await trio.sleep(0.1)
        assert row["best_seq"] >= 3 and row["paid_units"] > 0, row
        await req.market.terminate(agreement_id, "done")
        p, r = await _both_closed(prov, req, agreement_id, 20)
        earned = (await prov.payments.driver.balance(prov.key.node_id)).earned
        spent = (await req.payments.driver.balance(req.key.node_id)).spent
        assert earned == spent > 0
        req_balance = await req.payments.driver.balance(req.key.node_id)
        assert req_balance.locked == 0 and req_balance.total == parse_amount("10") - spent
        # Price x usage: the invoice is exactly the agreed price of the metered usage.
        notes = await prov.payments.provider._notes.list(agreement_id)  # type: ignore[union-attr]
        from payments.debit_note import open_debit_note

        channel = await prov.payments._channels.by_agreement(agreement_id)
        assert channel is not None
        final = open_debit_note(notes[-1].raw, terms=terms_from_bytes(channel.terms))
        assert final.final and final.amount_due == PRICING.cost(final.usage.cpu_ms, final.usage.duration_ms)
        assert final.usage.cpu_ms > 2000  # it burned CPU for ~3.5 s
        assert earned == final.amount_due  # paid in full
        invoices = {i["role"]: i for i in await prov.payments.invoices()}
        assert invoices["provider"]["status"] == "paid"


async def test_on_a_chain_the_provider_is_paid_by_the_contract_and_the_requestor_gets_the_rest(
        tmp_path: Path, image_id: str, anvil: Any) -> None:
    """The same batch settled on anvil: the deposit is locked in the contract (checked on chain by
    the provider), vouchers carry the EIP-712 proof, the provider closes on chain, the fee goes to
    its address and the requestor's tokens fall by exactly what it signed."""
    fee_to = "0x000000000000000000000000000000000000fEe5"
    async with network(tmp_path, anvil=anvil, fee_to=fee_to) as (prov, req, agreement_id):
        pd, rd = prov.payments.driver, req.payments.driver
        fee_before = await rd.token_balance(fee_to)  # type: ignore[attr-defined]
        await req.payments.fund(parse_amount("10"))
        assert await rd.token_balance() == parse_amount("10")  # type: ignore[attr-defined]
        await _run_for(req, agreement_id, image_id, 2.5)
        channel = await req.payments._channels.by_agreement(agreement_id)
        assert channel is not None and channel.channel_id.startswith("0x") and len(channel.channel_id) == 66
        onchain = await pd.channel(channel.channel_id)
        assert (onchain.payer, onchain.payee, onchain.deposit) == (rd.address, pd.address, channel.deposit)  # type: ignore[attr-defined]
        await req.market.terminate(agreement_id, "done")
        p, r = await _both_closed(prov, req, agreement_id, 30)
        earned = (await pd.balance(pd.address)).earned  # type: ignore[attr-defined]
        assert earned > 0 and earned == p["paid_units"]
        fee = earned * 200 // 10_000
        assert await pd.token_balance() == earned - fee  # type: ignore[attr-defined]
        assert await rd.token_balance(fee_to) - fee_before == fee  # type: ignore[attr-defined]
        assert await rd.token_balance() == parse_amount("10") - earned  # type: ignore[attr-defined]
        status = await req.payments.status()
        assert status["chain"]["account"] == rd.address and status["chain"]["token_balance"] == parse_amount("10") - earned  # type: ignore[attr-defined]
        row = next(c for c in status["chain"]["channels"] if c["channel_id"] == channel.channel_id)
        assert row["state"] == "closed" and [op for op, _ in row["transactions"]] == ["open"]
        prow = next(c for c in (await prov.payments.status())["chain"]["channels"] if c["channel_id"] == channel.channel_id)
        assert [op for op, _ in prow["transactions"]] == ["close"] and prow["redeemed_units"] == earned


async def test_on_a_chain_the_provider_closes_before_the_deposit_expires(
        tmp_path: Path, image_id: str, anvil: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the requestor does, the provider redeems its best voucher before the payer may take
    the deposit back: at the expiry minus the margin it ends the agreement and closes on chain."""
    import time as real_time

    from yagna.payment_service import provider as provider_module
    from yagna.payment_service.protocol import close_margin

    async with network(tmp_path, anvil=anvil) as (prov, req, agreement_id):
        await req.payments.fund(parse_amount("10"))
        await _run_for(req, agreement_id, image_id, 1.5)
        with trio.fail_after(10):
            while not (await prov.payments.status())["agreements"][0]["paid_units"]:
                await trio.sleep(0.1)
        channel = await prov.payments._channels.by_agreement(agreement_id)
        assert channel is not None
        terms = terms_from_bytes(channel.terms)
        assert terms.expiry > real_time.time() + 2 * close_margin(0)  # the requestor's expiry leaves room

        class Later:  # the provider's wall clock, moved to the expiry minus the margin
            perf_counter = staticmethod(real_time.perf_counter)

            @staticmethod
            def time() -> float:
                return terms.expiry - close_margin(0) + 1.0

        monkeypatch.setattr(provider_module, "time", Later)
        with trio.fail_after(30):
            while (await prov.market.get_agreement(agreement_id))["state"] != "terminated":
                await trio.sleep(0.1)
        assert "deposit-expiring" in ((await prov.market.get_agreement(agreement_id))["reason"] or "")
        with trio.fail_after(30):
            while (row := (await prov.payments.status())["agreements"][0])["state"] != "closed":
                await trio.sleep(0.1)
        onchain = await prov.payments.driver.channel(channel.channel_id)
        assert onchain.state == "closed" and onchain.redeemed == row["paid_units"] > 0


async def test_requestor_that_withholds_payment_is_paused_then_cut_off(tmp_path: Path, image_id: str) -> None:
    async with network(tmp_path, withhold=True) as (prov, req, agreement_id):
        await req.payments.fund(parse_amount("10"))
        acts = req.activity.requestor
        assert acts is not None
        activity_id = (await acts.create(agreement_id))["activity_id"]
        await acts.exec(activity_id, [{"deploy": {"image": image_id}}, {"start": {}},
                                      {"run": {"argv": ["sleep", "600"]}}])
        with trio.fail_after(30):
            while (await prov.market.get_agreement(agreement_id))["state"] != "terminated":
                await trio.sleep(0.1)
        agreement = await prov.market.get_agreement(agreement_id)
        assert "not-paid" in (agreement["reason"] or "")
        with trio.fail_after(20):
            while (await acts.state(activity_id))["state"] != "terminated":
                await trio.sleep(0.2)
        channel = await prov.payments._channels.by_agreement(agreement_id)
        assert channel is not None and channel.paid == 0
        assert "paused" in (channel.reason or "") or channel.state == "closed"


async def test_forged_replayed_and_foreign_vouchers_change_nothing(tmp_path: Path, image_id: str) -> None:
    async with network(tmp_path) as (prov, req, agreement_id):
        await req.payments.fund(parse_amount("10"))
        await req.payments.requestor.ensure_channel(agreement_id)  # type: ignore[union-attr]
        row = await req.payments._channels.by_agreement(agreement_id)
        assert row is not None
        terms = terms_from_bytes(row.terms)
        rr = req.net.rr
        # A voucher signed with another key (forged), for another agreement, or another network.
        mallory = NodeKey.generate()
        forged = sign_voucher(mallory, ChannelTerms(**{**terms.to_record(), "payer": mallory.node_id}), 1, 1000)
        other_agreement = sign_voucher(req.key, ChannelTerms(**{**terms.to_record(), "agreement_id": "f" * 64}), 1, 1000)
        other_network = sign_voucher(req.key, ChannelTerms(**{**terms.to_record(), "network_id": "mainnet"}), 1, 1000)
        for raw, code in ((forged, "bad-signature"), (other_agreement, "wrong-agreement"), (other_network, "wrong-network")):
            with pytest.raises(RemoteError) as exc:
                await rr.request(prov.key.node_id, PAYMENT, {"op": "voucher", "raw": raw})
            assert exc.value.code == code
        # A real one, then replayed: acknowledged again, counted once.
        good = sign_voucher(req.key, terms, 1, 1000)
        assert (await rr.request(prov.key.node_id, PAYMENT, {"op": "voucher", "raw": good}))["ack_seq"] == 1
        assert (await rr.request(prov.key.node_id, PAYMENT, {"op": "voucher", "raw": good}))["ack_seq"] == 1
        stored = await prov.payments._channels.by_agreement(agreement_id)
        assert stored is not None and (stored.best_seq, stored.paid) == (1, 1000)
        # A lower cumulative amount under a higher seq: rejected, evidence kept, the agreement ends.
        lower = sign_voucher(req.key, terms, 2, 10)
        with pytest.raises(RemoteError) as exc:
            await rr.request(prov.key.node_id, PAYMENT, {"op": "voucher", "raw": lower})
        assert exc.value.code == "decreased"
        stored = await prov.payments._channels.by_agreement(agreement_id)
        assert stored is not None and stored.evidence is not None and (stored.best_seq, stored.paid) == (1, 1000)
        with trio.fail_after(10):
            while (await prov.market.get_agreement(agreement_id))["state"] != "terminated":
                await trio.sleep(0.05)


async def test_a_bonus_is_paid_on_top_of_usage_and_not_absorbed(tmp_path: Path, image_id: str) -> None:
    async with network(tmp_path) as (prov, req, agreement_id):
        await req.payments.fund(parse_amount("10"))
        await req.payments.requestor.ensure_channel(agreement_id)  # type: ignore[union-attr]
        bonus = parse_amount("0.0001")
        await req.payments.requestor.pay_bonus(agreement_id, bonus)  # type: ignore[union-attr]
        with trio.fail_after(10):
            while (await prov.payments._channels.by_agreement(agreement_id)).paid != bonus:  # type: ignore[union-attr]
                await trio.sleep(0.05)
        await _run_for(req, agreement_id, image_id, 2.0)
        await req.market.terminate(agreement_id, "done")
        with trio.fail_after(20):
            while (await prov.payments._channels.by_agreement(agreement_id)).state != "closed":  # type: ignore[union-attr]
                await trio.sleep(0.1)
        invoice = await prov.payments._invoices.get(agreement_id)
        earned = (await prov.payments.driver.balance(prov.key.node_id)).earned
        assert invoice is not None and earned == invoice.amount + bonus  # usage paid in full, plus the bonus


async def test_the_voucher_in_a_debit_note_answer_is_stored_without_the_voucher_message(
    tmp_path: Path, image_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12: one request per paid interval. The voucher message (the acknowledged copy) never gets
    through here, yet the provider holds every voucher the answers carried; nothing is acknowledged."""
    from yagna.payment_service.requestor import RequestorPayments

    async def never_delivers(self: RequestorPayments, payer: Any) -> None:
        await trio.sleep_forever()

    monkeypatch.setattr(RequestorPayments, "_deliver", never_delivers)
    async with network(tmp_path) as (prov, req, agreement_id):
        await req.payments.fund(parse_amount("10"))
        await _run_for(req, agreement_id, image_id, 2.5)
        p = {r["agreement_id"]: r for r in (await prov.payments.status())["agreements"]}[agreement_id]
        assert p["best_seq"] >= 2 and p["paid_units"] > 0, p
        channel = await req.payments._channels.by_agreement(agreement_id)
        assert channel is not None and channel.acked_seq == 0  # acknowledged only through the message
        stored = await prov.payments._channels.by_agreement(agreement_id)
        assert stored is not None and stored.best_seq == p["best_seq"]  # durably, not just in memory


async def test_a_copy_of_a_voucher_being_committed_is_acknowledged_only_after_the_commit(
    tmp_path: Path, image_id: str
) -> None:
    async with network(tmp_path) as (prov, req, agreement_id):
        await req.payments.fund(parse_amount("10"))
        provider = prov.payments.provider
        assert provider is not None
        await req.payments.requestor.ensure_channel(agreement_id)  # type: ignore[union-attr]
        with trio.fail_after(10):
            while agreement_id not in provider._payees:
                await trio.sleep(0.05)
        payee = provider._payees[agreement_id]
        payer = req.payments.requestor._payers[agreement_id]  # type: ignore[union-attr]
        _, raw = payer.core.next_voucher(1000)
        committed = trio.Event()
        real_save = provider._channels.save_best

        async def slow_save(*args: Any) -> bool:
            await trio.sleep(0.3)
            result = await real_save(*args)
            committed.set()
            return result

        provider._channels.save_best = slow_save  # type: ignore[method-assign]
        acks: list[tuple[int, bool]] = []

        async def take() -> None:
            seq = await provider._take_voucher(payee, raw)
            acks.append((seq, committed.is_set()))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(take)
            await trio.sleep(0.05)
            nursery.start_soon(take)  # the same voucher again, while the first is being committed
        assert [a for a in acks] == [(payee.core.best_seq, True), (payee.core.best_seq, True)]


async def test_the_last_voucher_is_acknowledged_after_the_provider_closed_its_channel(
    tmp_path: Path, image_id: str
) -> None:
    """Regression: the final voucher rides in the invoice's answer, so the provider closes its channel
    before the voucher message arrives; it was refused as an unknown channel and the requestor settled
    only after its settle timeout, the last voucher never acknowledged."""
    async with network(tmp_path) as (prov, req, agreement_id):
        await req.payments.fund(parse_amount("10"))
        await _run_for(req, agreement_id, image_id, 1.5)
        await req.market.terminate(agreement_id, "done")
        with trio.fail_after(20):
            while True:
                p = {r["agreement_id"]: r for r in (await prov.payments.status())["agreements"]}[agreement_id]
                r = {r["agreement_id"]: r for r in (await req.payments.status())["agreements"]}[agreement_id]
                if p["state"] == "closed" and r["state"] == "closed":
                    break
                await trio.sleep(0.05)
        provider_row = await prov.payments._channels.by_agreement(agreement_id)
        requestor_row = await req.payments._channels.by_agreement(agreement_id)
        assert provider_row is not None and requestor_row is not None
        assert requestor_row.acked_seq == provider_row.best_seq > 0
        # only that exact voucher: another one for the closed channel is still refused
        rr = req.net.rr
        assert (await rr.request(prov.key.node_id, PAYMENT, {"op": "voucher", "raw": provider_row.best_voucher})
                )["ack_seq"] == provider_row.best_seq
        payer_terms = terms_from_bytes(requestor_row.terms)
        other = sign_voucher(req.key, payer_terms, provider_row.best_seq + 1, provider_row.best_amount + 1)
        with pytest.raises(RemoteError) as exc:
            await rr.request(prov.key.node_id, PAYMENT, {"op": "voucher", "raw": other})
        assert exc.value.code == "unknown-channel"


async def test_a_topped_up_lease_is_paid_beyond_its_first_deposit(tmp_path: Path, image_id: str) -> None:
    """A lease's deposit covers a short window; a top-up lets vouchers (and the provider's pay) go past it."""
    async with network(tmp_path) as (prov, req, agreement_id):
        payer = req.payments.requestor
        assert payer is not None
        await req.payments.fund(parse_amount("10"))
        first = PRICING.estimate(1, 1)  # one second of the worst case: the work below costs more
        payer.deposit_caps[agreement_id] = first
        await payer.ensure_channel(agreement_id)
        topped = await payer.top_up(agreement_id, parse_amount("1"))
        assert topped["deposit_units"] == first + parse_amount("1") and topped["provider_told"]
        channel = await prov.payments._channels.by_agreement(agreement_id)
        assert channel is not None and channel.deposit == topped["deposit_units"]
        assert terms_from_bytes(channel.terms).deposit == topped["deposit_units"]  # a restart keeps it
        await _run_for(req, agreement_id, image_id, 2.5)
        await req.market.terminate(agreement_id, "done")
        await _both_closed(prov, req, agreement_id, 20)
        invoice = await prov.payments._invoices.get(agreement_id)
        earned = (await prov.payments.driver.balance(prov.key.node_id)).earned
        assert invoice is not None and earned == invoice.amount > first  # paid in full, past the first deposit
        req_balance = await req.payments.driver.balance(req.key.node_id)
        assert req_balance.locked == 0 and req_balance.spent == earned


async def test_a_top_up_is_refused_without_funds_and_for_unknown_agreements(tmp_path: Path, image_id: str) -> None:
    async with network(tmp_path) as (prov, req, agreement_id):
        from yagna.payment_service import PaymentRequired

        payer = req.payments.requestor
        assert payer is not None
        with pytest.raises(PaymentRequired) as unknown:
            await payer.top_up(agreement_id, 1)  # no channel yet
        assert unknown.value.code == "unknown-agreement"
        await req.payments.fund(parse_amount("1"))
        payer.deposit_caps[agreement_id] = parse_amount("0.5")
        await payer.ensure_channel(agreement_id)
        with pytest.raises(PaymentRequired) as short:
            await payer.top_up(agreement_id, parse_amount("1.5"))  # more than was funded
        assert short.value.code == "insufficient-funds" and "payment fund" in str(short.value)
        # a payee that is told a lower deposit refuses it (nothing changes)
        channel = await prov.payments._channels.by_agreement(agreement_id)
        assert channel is not None
        from payments.messages import TopUpMsg, encode_request

        with pytest.raises(RemoteError) as lowered:
            await req.net.rr.request(prov.key.node_id, PAYMENT, encode_request(TopUpMsg(channel.channel_id, 1)))
        assert lowered.value.code == "bad-deposit"
