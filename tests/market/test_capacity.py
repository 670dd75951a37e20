"""Capacity arithmetic (exact, in MiB), machine measurement with injected inputs, the ledger."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from market.capacity import (
    MAX_GIB,
    Capacity,
    CapacityError,
    CapacityLedger,
    default_limits,
    machine_capacity,
)
from market.errors import MarketError

MEMINFO = """MemTotal:       16314300 kB
MemFree:         1234567 kB
MemAvailable:    8000000 kB
"""

gib = st.floats(min_value=0, max_value=1024, allow_nan=False, allow_infinity=False)
capacities = st.builds(Capacity, st.integers(min_value=0, max_value=256), gib, gib)


def test_error_tree() -> None:
    assert issubclass(CapacityError, MarketError)


def test_sizes_round_up_to_whole_mib() -> None:
    c = Capacity(2, 0.3, 1.5)
    assert c.mem_mib == 308  # 307.2 MiB rounded up: a need is never under-counted
    assert c.mem_gib == 308 / 1024
    assert c.storage_mib == 1536 and c.storage_gib == 1.5
    assert Capacity(1, 1, 2) == Capacity(1, 1.0, 2.0)
    assert isinstance(Capacity(1, 1, 2).mem_gib, float)
    assert Capacity.from_mib(4, 512, 1024) == Capacity(4, 0.5, 1.0)


@pytest.mark.parametrize(
    "args",
    [
        (-1, 1, 1), (1.0, 1, 1), (True, 1, 1), (2**21, 1, 1),
        (1, -0.1, 1), (1, float("nan"), 1), (1, float("inf"), 1), (1, "1", 1), (1, True, 1), (1, MAX_GIB + 1, 1),
        (1, 1, -1), (1, 1, float("nan")), (1, 1, None),
    ],
)
def test_constructor_validates(args: tuple[object, ...]) -> None:
    with pytest.raises(CapacityError):
        Capacity(*args)  # type: ignore[arg-type]


def test_from_mib_refuses_non_ints() -> None:
    with pytest.raises(CapacityError):
        Capacity.from_mib(1, 1.5, 1)  # type: ignore[arg-type]


def test_fits_reads_need_within_available() -> None:
    need = Capacity(2, 1, 1)
    assert need.fits(Capacity(2, 1, 1))
    assert need.fits(Capacity(4, 8, 8))
    assert not need.fits(Capacity(1, 8, 8))
    assert not need.fits(Capacity(4, 0.5, 8))
    assert not need.fits(Capacity(4, 8, 0.5))


def test_plus_minus_min() -> None:
    a, b = Capacity(4, 8, 100), Capacity(1, 0.5, 200)
    assert a.plus(b) == Capacity(5, 8.5, 300)
    assert a.minus(b) == Capacity(3, 7.5, 0)  # floored at zero
    assert a.min(b) == Capacity(1, 0.5, 100)


@given(capacities, capacities)
def test_plus_then_minus_is_exact(a: Capacity, b: Capacity) -> None:
    assert a.plus(b).minus(b) == a
    assert a.plus(b) == b.plus(a)
    assert a.min(b).fits(a) and a.min(b).fits(b)
    assert a.fits(a.plus(b))


def test_json_round_trip() -> None:
    c = Capacity(3, 0.75, 20)
    assert c.to_json() == {"threads": 3, "mem_gib": 0.75, "storage_gib": 20.0}
    assert Capacity.from_json(c.to_json()) == c
    for bad in ([], {"threads": 1}, {"threads": 1, "mem_gib": 1, "storage_gib": 1, "gpu": 1}, {"threads": "1", "mem_gib": 1, "storage_gib": 1}):
        with pytest.raises(CapacityError):
            Capacity.from_json(bad)


# -- machine ---------------------------------------------------------------------------


def test_machine_capacity_with_injected_inputs(tmp_path: Path) -> None:
    c = machine_capacity(tmp_path, cpu_count=8, meminfo_text=MEMINFO, disk_free_bytes=100 * 2**30 + 2**20 - 1)
    assert c == Capacity.from_mib(8, 16314300 // 1024, 100 * 1024)  # sizes rounded down: what we have


def test_machine_capacity_measures_the_real_machine(tmp_path: Path) -> None:
    c = machine_capacity(tmp_path / "not" / "created" / "yet")
    assert c.threads >= 1
    assert c.mem_mib > 0
    assert c.storage_mib >= 0


def test_machine_capacity_refuses_bad_meminfo(tmp_path: Path) -> None:
    with pytest.raises(CapacityError, match="MemTotal"):
        machine_capacity(tmp_path, cpu_count=1, meminfo_text="MemFree: 1 kB\n", disk_free_bytes=0)
    with pytest.raises(CapacityError):
        machine_capacity(tmp_path, cpu_count=1, meminfo_text=MEMINFO, disk_free_bytes=-1)
    with pytest.raises(CapacityError):
        machine_capacity(tmp_path, cpu_count=0.5, meminfo_text=MEMINFO, disk_free_bytes=0)  # type: ignore[arg-type]


def test_default_limits_are_golems() -> None:
    machine = Capacity.from_mib(8, 10_000, 1_000)
    assert default_limits(machine) == Capacity.from_mib(7, 7_000, 800)
    assert default_limits(Capacity.from_mib(1, 1024, 1024)).threads == 1  # never zero threads
    assert default_limits(Capacity.from_mib(0, 0, 0)) == Capacity.from_mib(1, 0, 0)


# -- ledger ----------------------------------------------------------------------------

TOTAL = Capacity(8, 16, 100)
SMALL = Capacity(2, 4, 10)


def test_reserve_and_release() -> None:
    ledger = CapacityLedger(TOTAL)
    assert ledger.total == TOTAL
    assert ledger.used() == Capacity(0, 0, 0) and ledger.free() == TOTAL
    assert ledger.reserve("a", SMALL)
    assert ledger.used() == SMALL
    assert ledger.free() == Capacity(6, 12, 90)
    assert ledger.reservations() == {"a": SMALL}
    assert ledger.release("a")
    assert not ledger.release("a")
    assert ledger.used() == Capacity(0, 0, 0)


def test_a_taken_key_changes_nothing() -> None:
    ledger = CapacityLedger(TOTAL)
    assert ledger.reserve("a", SMALL)
    assert not ledger.reserve("a", Capacity(1, 1, 1))
    assert ledger.reservations() == {"a": SMALL} and ledger.used() == SMALL


def test_what_does_not_fit_changes_nothing() -> None:
    ledger = CapacityLedger(TOTAL)
    for i in range(4):
        assert ledger.reserve(f"k{i}", SMALL)  # 4 x 2 threads = 8
    assert not ledger.fits(Capacity(1, 0, 0))
    assert not ledger.reserve("k4", Capacity(1, 0, 0))
    assert len(ledger.reservations()) == 4
    assert ledger.free() == Capacity(0, 0, 60)
    assert ledger.fits(Capacity(0, 0, 60)) and not ledger.fits(Capacity(0, 0, 61))


def test_reservations_is_a_copy() -> None:
    ledger = CapacityLedger(TOTAL)
    ledger.reserve("a", SMALL)
    ledger.reservations().clear()
    assert ledger.reservations() == {"a": SMALL}


def test_shrinking_below_used_lets_nothing_new_fit() -> None:
    ledger = CapacityLedger(TOTAL)
    assert ledger.reserve("a", Capacity(4, 8, 10))
    ledger.set_total(Capacity(8, 4, 100))  # memory now below what is reserved
    assert ledger.reservations() == {"a": Capacity(4, 8, 10)}  # nothing is evicted
    assert ledger.free() == Capacity(4, 0, 90)
    assert not ledger.fits(Capacity(1, 0, 0))  # not even a need without memory
    assert not ledger.reserve("b", Capacity(1, 0, 1))
    assert ledger.release("a")
    assert ledger.reserve("b", Capacity(1, 4, 1))


def test_ledger_refuses_non_capacities() -> None:
    with pytest.raises(CapacityError):
        CapacityLedger((1, 1, 1))  # type: ignore[arg-type]
    ledger = CapacityLedger(TOTAL)
    with pytest.raises(CapacityError):
        ledger.reserve("a", (1, 1, 1))  # type: ignore[arg-type]
    with pytest.raises(CapacityError):
        ledger.reserve(1, SMALL)  # type: ignore[arg-type]
    with pytest.raises(CapacityError):
        ledger.set_total(None)  # type: ignore[arg-type]


def test_ten_thousand_reservations_return_exactly_to_the_start() -> None:
    """Awkward float sizes (0.1, 0.3, 1/3 GiB) reserved and released in a shuffled order."""
    total = Capacity(100_000, 100_000, 1_000_000)
    ledger = CapacityLedger(total)
    rng = random.Random(7)
    sizes = [Capacity(rng.randint(0, 3), rng.choice([0.1, 0.3, 1 / 3, 0.7, 2.2]), rng.choice([0.1, 1e-4, 5.55])) for _ in range(64)]
    live: list[str] = []
    for i in range(10_000):
        key = f"agreement-{i}"
        assert ledger.reserve(key, sizes[i % len(sizes)])
        live.append(key)
        if rng.random() < 0.6:
            assert ledger.release(live.pop(rng.randrange(len(live))))
    rng.shuffle(live)
    for key in live:
        assert ledger.release(key)
    assert ledger.used() == Capacity(0, 0, 0)
    assert ledger.used().mem_gib == 0.0 and ledger.used().storage_gib == 0.0
    assert ledger.free() == total
    assert ledger.reservations() == {}


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 9), capacities), max_size=60))
def test_used_is_always_the_sum_of_reservations(ops: list[tuple[bool, int, Capacity]]) -> None:
    ledger = CapacityLedger(Capacity(512, 4096, 4096))
    for reserve, k, need in ops:
        key = f"k{k}"
        if reserve:
            before = ledger.reservations()
            ok = ledger.reserve(key, need)
            if not ok:
                assert ledger.reservations() == before
        else:
            ledger.release(key)
        total = Capacity(0, 0, 0)
        for c in ledger.reservations().values():
            total = total.plus(c)
        assert ledger.used() == total
        assert ledger.used().fits(ledger.total)
