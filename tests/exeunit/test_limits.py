"""Container limits from an agreement, floors and caps, and narrowing (never widening)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exeunit.errors import ExeUnitError, ScriptError
from exeunit.limits import (
    CPU_THREADS,
    MAX_CPU_THREADS,
    MAX_PIDS,
    MEM_GIB,
    MIN_MEMORY_BYTES,
    MIN_STORAGE_BYTES,
    MIN_TMP_BYTES,
    STORAGE_GIB,
    limits_from_agreement,
    narrow,
    pids_for,
)
from exeunit.runtime import ContainerLimits

GIB = 1 << 30
MIB = 1 << 20
PROPS: dict[str, object] = {CPU_THREADS: 2, MEM_GIB: 4.0, STORAGE_GIB: 10, "golem.runtime.name": "docker"}


def test_limits_from_agreement() -> None:
    assert limits_from_agreement(PROPS) == ContainerLimits(
        cpu_threads=2.0, memory_bytes=4 * GIB, storage_bytes=10 * GIB, pids=288, tmp_bytes=64 * MIB
    )


def test_fractional_gib() -> None:
    limits = limits_from_agreement({**PROPS, MEM_GIB: 0.5, STORAGE_GIB: 1.5})
    assert (limits.memory_bytes, limits.storage_bytes) == (GIB // 2, 3 * GIB // 2)


def test_floors_raise_tiny_values() -> None:
    limits = limits_from_agreement({**PROPS, MEM_GIB: 0.0001, STORAGE_GIB: 1e-9})
    assert limits.memory_bytes == MIN_MEMORY_BYTES and limits.storage_bytes == MIN_STORAGE_BYTES
    assert limits.tmp_bytes == MIN_MEMORY_BYTES // 4


def test_tmp_is_a_quarter_of_memory_at_most_64_mib() -> None:
    assert limits_from_agreement({**PROPS, MEM_GIB: 0.125}).tmp_bytes == 32 * MIB
    assert limits_from_agreement({**PROPS, MEM_GIB: 64}).tmp_bytes == 64 * MIB


def test_pids_scale_with_threads() -> None:
    assert pids_for(1) == 256
    assert pids_for(2) == 288
    assert pids_for(8) == 256 + 7 * 32
    assert pids_for(10_000) == MAX_PIDS
    assert [pids_for(t) for t in range(1, 200)] == sorted(pids_for(t) for t in range(1, 200))
    assert limits_from_agreement({**PROPS, CPU_THREADS: 1}).pids == 256


def test_integral_float_threads_are_accepted() -> None:
    assert limits_from_agreement({**PROPS, CPU_THREADS: 3.0}).cpu_threads == 3.0


@pytest.mark.parametrize("name", [CPU_THREADS, MEM_GIB, STORAGE_GIB])
@pytest.mark.parametrize("value", [None, "4", True, 0, -1, math.nan, math.inf, [4], {"v": 4}])
def test_invalid_properties_name_the_property(name: str, value: object) -> None:
    with pytest.raises(ExeUnitError) as info:
        limits_from_agreement({**PROPS, name: value})
    assert name in str(info.value)
    assert not isinstance(info.value, ScriptError)


@pytest.mark.parametrize("name", [CPU_THREADS, MEM_GIB, STORAGE_GIB])
def test_missing_properties_name_the_property(name: str) -> None:
    with pytest.raises(ExeUnitError, match=name.replace(".", r"\.")):
        limits_from_agreement({k: v for k, v in PROPS.items() if k != name})


@pytest.mark.parametrize(
    ("name", "value"),
    [(CPU_THREADS, 1.5), (CPU_THREADS, MAX_CPU_THREADS + 1), (MEM_GIB, 10**6), (STORAGE_GIB, 10**9), (MEM_GIB, 10**400)],
)
def test_absurd_values_are_refused(name: str, value: object) -> None:
    with pytest.raises(ExeUnitError, match=name.replace(".", r"\.")):
        limits_from_agreement({**PROPS, name: value})


# -- narrowing --------------------------------------------------------------------------------

LIMITS = limits_from_agreement(PROPS)


def test_narrowing() -> None:
    assert narrow(LIMITS, {}) == LIMITS
    narrowed = narrow(LIMITS, {"cpu_threads": 0.5, "storage_bytes": GIB, "pids": 100})
    assert (narrowed.cpu_threads, narrowed.storage_bytes, narrowed.pids) == (0.5, GIB, 100)
    assert narrowed.memory_bytes == LIMITS.memory_bytes
    assert narrow(LIMITS, {"cpu_threads": 1}).cpu_threads == 1.0
    assert narrow(LIMITS, dict(memory_bytes=LIMITS.memory_bytes)) == LIMITS  # equal is not wider


def test_narrowing_memory_shrinks_tmp_unless_given() -> None:
    assert narrow(LIMITS, {"memory_bytes": 128 * MIB}).tmp_bytes == 32 * MIB
    assert narrow(LIMITS, {"memory_bytes": 128 * MIB, "tmp_bytes": 48 * MIB}).tmp_bytes == 48 * MIB
    assert narrow(LIMITS, {"memory_bytes": 64 * MIB}).tmp_bytes == 16 * MIB
    assert narrow(LIMITS, {"memory_bytes": 3 * GIB}).tmp_bytes == LIMITS.tmp_bytes


@pytest.mark.parametrize(
    ("requested", "field"),
    [
        ({"cpu_threads": 2.5}, "cpu_threads"),
        ({"memory_bytes": 4 * GIB + 1}, "memory_bytes"),
        ({"storage_bytes": 11 * GIB}, "storage_bytes"),
        ({"pids": 10_000}, "pids"),
        ({"tmp_bytes": 65 * MIB}, "tmp_bytes"),
        ({"memory_bytes": 1}, "memory_bytes"),  # below the floor
        ({"cpu_threads": 0}, "cpu_threads"),
        ({"pids": 0}, "pids"),
        ({"tmp_bytes": 0}, "tmp_bytes"),
        ({"memory_bytes": 1.5 * GIB}, "memory_bytes"),
        ({"memory_bytes": "1G"}, "memory_bytes"),
        ({"pids": True}, "pids"),
        ({"cpu_threads": math.nan}, "cpu_threads"),
        ({"cpu_threads": -math.inf}, "cpu_threads"),
        ({"network": "host"}, "network"),
        ({"golem.inf.mem.gib": 1}, "golem.inf.mem.gib"),
    ],
)
def test_refused_requests_name_the_field(requested: dict[str, object], field: str) -> None:
    with pytest.raises(ScriptError) as info:
        narrow(LIMITS, requested)
    assert info.value.field == field


def test_requested_must_be_a_map() -> None:
    with pytest.raises(ScriptError):
        narrow(LIMITS, [("pids", 1)])  # type: ignore[arg-type]


_request = st.dictionaries(
    st.sampled_from(["cpu_threads", "memory_bytes", "storage_bytes", "pids", "tmp_bytes", "other"]),
    st.integers(-10, 2**40) | st.floats(allow_nan=True) | st.booleans() | st.none(),
    max_size=5,
)


@given(_request)
def test_property_narrow_never_widens(requested: dict[str, object]) -> None:
    try:
        result = narrow(LIMITS, requested)
    except ScriptError as exc:
        assert exc.field in requested
        return
    for name in ("cpu_threads", "memory_bytes", "storage_bytes", "pids", "tmp_bytes"):
        assert getattr(result, name) <= getattr(LIMITS, name)
    assert result.tmp_bytes <= max(MIN_TMP_BYTES, result.memory_bytes // 4) or "tmp_bytes" in requested
