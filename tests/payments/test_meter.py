"""The payer's own meter: cumulative over a process's readings, and across a restart."""

from __future__ import annotations

import pytest

from payments.meter import MeterRecord, OwnMeter


def test_readings_accumulate_and_never_go_back() -> None:
    m = OwnMeter()
    assert m.cap_ms(2000) == 0  # no activity yet: nothing to pay for
    assert m.observe(now_ms=1_000, elapsed_ms=1_000, activities=1)
    assert m.observe(now_ms=5_000, elapsed_ms=5_000, activities=1)
    m.observe(now_ms=5_000, elapsed_ms=3_000, activities=1)  # the exe-unit side forgot an ended activity
    assert m.record.ms == 5_000
    assert m.observe(now_ms=6_000, elapsed_ms=4_000, activities=1)  # counts from the new reference
    assert m.record == MeterRecord(6_000, 6_000, True, 1)
    assert m.cap_ms(2000) == 8_000


def test_an_activity_that_stops_is_no_longer_live_and_nothing_is_stored_for_idle_readings() -> None:
    m = OwnMeter()
    m.observe(now_ms=1_000, elapsed_ms=1_000, activities=1)
    assert m.observe(now_ms=1_010, elapsed_ms=1_000, activities=1)  # too close to tell: still live
    assert m.record.live
    assert m.observe(now_ms=3_000, elapsed_ms=1_000, activities=1)  # it ended
    assert not m.record.live
    assert not m.observe(now_ms=9_000, elapsed_ms=1_000, activities=1)


def test_resume_counts_the_downtime_of_an_activity_still_open() -> None:
    m = OwnMeter(MeterRecord(ms=30_000, at_ms=100_000, live=True, activities=1))
    m.resume(now_ms=110_000, elapsed_ms=0, activities=1)
    assert m.record.ms == 40_000
    m.observe(now_ms=120_000, elapsed_ms=10_000, activities=1)
    assert m.record.ms == 50_000


@pytest.mark.parametrize(("live", "activities"), [(False, 1), (True, 0)])
def test_resume_does_not_count_the_downtime_otherwise(live: bool, activities: int) -> None:
    m = OwnMeter(MeterRecord(ms=30_000, at_ms=100_000, live=live, activities=1))
    m.resume(now_ms=3_700_000, elapsed_ms=0, activities=activities)
    assert m.record.ms == 30_000 and not m.record.live


@pytest.mark.parametrize("bad", [{"ms": -1}, {"at_ms": 1.5}, {"activities": True}, {"live": 1}])
def test_a_record_is_checked(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        MeterRecord(**bad)  # type: ignore[arg-type]
