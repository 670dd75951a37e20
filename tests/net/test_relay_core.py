"""Relay limits and reservation state (sans-io) and the reservation loop (autojump_clock)."""

from __future__ import annotations

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from yagna.net.relay import Waker, keep_reservations, should_reserve, should_serve
from yagna.net.relay_core import MiB, RelayAdmission, RelayLimitExceeded, RelayLimits, RelayRefused, ReservationKeeper

# --- relay side -----------------------------------------------------------


def test_reservation_cap_refuses_and_renewal_is_not_counted_twice() -> None:
    adm = RelayAdmission(RelayLimits(max_reservations=2))
    adm.reserve("a", 0)
    adm.reserve("b", 0)
    adm.reserve("a", 10)  # a renewal is always granted
    with pytest.raises(RelayRefused, match="reservations full"):
        adm.reserve("c", 10)
    assert adm.reservations() == 2


def test_reservations_expire_and_free_their_slot() -> None:
    adm = RelayAdmission(RelayLimits(max_reservations=1, reservation_ttl=100))
    adm.reserve("a", 0)
    assert adm.has_reservation("a", 99)
    assert not adm.has_reservation("a", 100)
    adm.reserve("b", 100)


def test_circuit_needs_a_reservation_of_the_destination() -> None:
    adm = RelayAdmission()
    with pytest.raises(RelayRefused, match="no reservation"):
        adm.open_circuit("src", "dst", 0)
    adm.reserve("dst", 0)
    adm.open_circuit("src", "dst", 0)
    with pytest.raises(RelayRefused):
        adm.open_circuit("dst", "dst", 0)


def test_circuits_per_peer_and_total_caps() -> None:
    adm = RelayAdmission(RelayLimits(circuits_per_peer=2, max_circuits=3))
    for d in ("d1", "d2", "d3", "d4"):
        adm.reserve(d, 0)
    adm.open_circuit("s", "d1", 0)
    cid = adm.open_circuit("s", "d2", 0)
    with pytest.raises(RelayRefused, match="already has 2 circuits"):
        adm.open_circuit("s", "d3", 0)
    adm.open_circuit("t", "d3", 0)
    with pytest.raises(RelayRefused, match="circuits full"):
        adm.open_circuit("u", "d4", 0)
    adm.close_circuit(cid)
    adm.open_circuit("u", "d4", 0)


def test_byte_and_duration_limits_name_the_relay_limit() -> None:
    adm = RelayAdmission(RelayLimits(circuit_bytes=1 * MiB, circuit_duration=60))
    adm.reserve("d", 0)
    cid = adm.open_circuit("s", "d", 0)
    adm.carried(cid, MiB, 1)
    assert adm.allowance(cid) == 0
    with pytest.raises(RelayLimitExceeded, match="relay limit.*byte limit"):
        adm.carried(cid, 1, 2)
    cid2 = adm.open_circuit("s", "d", 0)
    assert adm.deadline(cid2) == 60
    with pytest.raises(RelayLimitExceeded, match="duration limit"):
        adm.carried(cid2, 1, 60)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["reserve", "open", "close", "drop"]),
                          st.integers(0, 9), st.integers(0, 9)), max_size=80))
def test_hostile_sequences_never_exceed_caps(ops: list[tuple[str, int, int]]) -> None:
    limits = RelayLimits(max_reservations=3, circuits_per_peer=2, max_circuits=4)
    adm = RelayAdmission(limits)
    opened: list[int] = []
    for t, (op, a, b) in enumerate(ops):
        try:
            if op == "reserve":
                adm.reserve(f"p{a}", t)
            elif op == "open":
                opened.append(adm.open_circuit(f"p{a}", f"p{b}", t))
            elif op == "close" and opened:
                adm.close_circuit(opened.pop(a % len(opened)))
            elif op == "drop":
                adm.drop(f"p{a}")
        except RelayRefused:
            pass
        assert adm.reservations() <= limits.max_reservations
        assert adm.circuits() <= limits.max_circuits


def test_limits_validate_and_worst_case() -> None:
    with pytest.raises(ValueError):
        RelayLimits(max_circuits=0)
    assert RelayLimits().worst_case_bytes() == 32 * 256 * MiB


# --- client side ------------------------------------------------------------


def test_keeper_reserves_on_two_relays_and_renews_before_expiry() -> None:
    k = ReservationKeeper(want=2, renew_margin=0.25)
    for r in ("r1", "r2", "r3"):
        k.candidate(r)
    assert k.due(0) == ["r1", "r2"]
    assert k.due(0) == []  # pending, not asked twice
    k.reserved("r1", 100, 0, ["/ip4/1.2.3.4/tcp/1/p2p/r1/p2p-circuit"])
    k.reserved("r2", 100, 0)
    assert k.relays() == ["r1", "r2"]
    assert k.relay_addrs() == ["/ip4/1.2.3.4/tcp/1/p2p/r1/p2p-circuit"]
    assert k.next_wakeup(0) == 75
    assert k.due(74) == []
    assert sorted(k.due(75)) == ["r1", "r2"]


def test_keeper_replaces_a_dead_relay_and_backs_off_a_refusing_one() -> None:
    k = ReservationKeeper(want=2, retry_base=5)
    for r in ("r1", "r2", "r3"):
        k.candidate(r)
    k.due(0)
    k.reserved("r1", 100, 0)
    k.failed("r2", 0)
    assert k.due(0) == ["r3"]
    k.reserved("r3", 100, 0)
    k.lost("r1")
    assert k.relays() == ["r3"]
    assert k.due(1) == []  # r2 still backing off
    assert k.next_wakeup(1) == 5
    assert k.due(5) == ["r2"]
    k.failed("r2", 5)
    assert k.next_wakeup(6) == 15  # doubled


def test_keeper_ignores_a_grant_for_a_relay_lost_meanwhile() -> None:
    k = ReservationKeeper(want=2)
    k.candidate("r1")
    k.due(0)
    k.lost("r1")
    k.reserved("r1", 100, 0)
    assert k.relays() == []


def test_reservation_rule() -> None:
    assert should_reserve("private", False)
    assert should_reserve("unknown", True)
    assert not should_reserve("unknown", False)
    assert not should_reserve("public", True)
    assert should_serve("auto", "public") and not should_serve("auto", "private")
    assert should_serve("on", "private") and not should_serve("off", "public")


# --- the loop on a virtual clock -------------------------------------------------


async def test_loop_renews_replaces_and_publishes(autojump_clock: trio.abc.Clock) -> None:
    k = ReservationKeeper(want=2, renew_margin=0.5, retry_base=1)
    alive = {"r1", "r2", "r3"}
    calls: list[tuple[float, str]] = []
    published: list[list[str]] = []

    async def reserve(relay: str) -> tuple[float, list[str]]:
        calls.append((trio.current_time(), relay))
        await trio.sleep(0.01)
        if relay not in alive:
            raise ConnectionError("relay gone")
        return 60.0, [f"/ip4/10.0.0.1/tcp/1/p2p/{relay}/p2p-circuit"]

    waker = Waker()
    for r in ("r1", "r2", "r3"):
        k.candidate(r)
    async with trio.open_nursery() as nursery:
        await nursery.start(lambda task_status: keep_reservations(k, reserve, published.append,
                                                                  waker=waker, task_status=task_status))
        await trio.sleep(1)
        assert k.relays() == ["r1", "r2"]
        await trio.sleep(40)  # renewed at about 30 s
        assert sum(1 for _, r in calls if r == "r1") == 2
        alive.discard("r1")
        k.lost("r1")
        waker.set()
        await trio.sleep(1)
        assert k.relays() == ["r2", "r3"]
        assert published[-1] == [f"/ip4/10.0.0.1/tcp/1/p2p/{r}/p2p-circuit" for r in ("r2", "r3")]
        # a relay that hangs is cut off by the request timeout and counted as failed
        k.candidate("r4")
        nursery.cancel_scope.cancel()


def test_config_file_relay_keys(tmp_path: object) -> None:
    from pathlib import Path

    from yagna import config_file
    from yagna.config import ConfigError

    path = Path(str(tmp_path)) / "yagna.toml"
    path.write_text('[net]\nrelay_service = "off"\nrelay_circuit_mib = 64\nrelay_circuits_per_peer = 2\n')
    net = config_file.load(path, required=True).net
    assert net.relay_service == "off"
    limits = config_file.relay_limits(net)
    assert limits is not None and limits.circuit_bytes == 64 * MiB and limits.circuits_per_peer == 2
    assert limits.max_circuits == RelayLimits().max_circuits
    path.write_text('[net]\nrelay_service = "maybe"\n')
    with pytest.raises(ConfigError, match="relay_service"):
        config_file.load(path, required=True)
    assert config_file.relay_limits(config_file.NetFileSettings()) is None
