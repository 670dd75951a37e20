"""Peer-exchange message validation and the redial backoff (both pure)."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yagna.core import wire
from yagna.core.base58 import b58encode
from yagna.core.errors import WireError
from yagna.core.identity import NodeKey
from yagna.net import px
from yagna.net.backoff import redial_delay

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

NODE_IDS = [NodeKey.from_seed(bytes([i]) * 32).node_id for i in range(3)]

# Values of the wire model (what a peer can send us after CBOR decoding).
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.binary(max_size=30)
)
cbor_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=8) | st.integers(-5, 5), children, max_size=5),
    max_leaves=25,
)

# Near-misses: the right keys with values of the wrong shape, so parsing gets deep.
addr_like = st.sampled_from(
    [
        "/ip4/127.0.0.1/tcp/4001",
        "/ip4/10.0.0.1/tcp/1/p2p/" + NODE_IDS[0],
        "ip4/no/leading/slash",
        "/" + "x" * 250,
        "",
        "/dns4/example.org/tcp/443",
    ]
) | cbor_values
addrs_like = st.lists(addr_like, max_size=10) | cbor_values
ED25519_PEER_ID_PREFIX = bytes((0x00, 0x24, 0x08, 0x01, 0x12, 0x20))
# Well-formed ids around random 32-byte keys: most are not points of the curve.
random_key_ids = st.binary(min_size=32, max_size=32).map(lambda k: b58encode(ED25519_PEER_ID_PREFIX + k))
node_id_like = (
    st.sampled_from([*NODE_IDS, "", "Qm" + "1" * 44, "0OIl", "12D3KooW" + "z" * 200])
    | random_key_ids
    | cbor_values
)
entry_like = st.fixed_dictionaries({"id": node_id_like, "addrs": addrs_like}) | cbor_values
requests_like = st.fixed_dictionaries({"addrs": addrs_like}) | cbor_values
responses_like = (
    st.fixed_dictionaries({"peers": st.lists(entry_like, max_size=4)})
    | st.fixed_dictionaries({"peers": st.lists(entry_like, max_size=4)}, optional={"x": cbor_values})
    | st.integers(60, 70).map(lambda n: {"peers": [{"id": NODE_IDS[n % 3], "addrs": []}] * n})
    | cbor_values
)


def through_the_wire(value: object) -> object:
    """What the handler sees: the value after canonical encode + decode."""
    return wire.decode(wire.encode(value))


@given(requests_like)
@FUZZ
def test_parse_request_raises_only_wire_error(payload: object) -> None:
    try:
        addrs = px.parse_request(through_the_wire(payload))
    except WireError:
        return
    assert isinstance(addrs, tuple) and len(addrs) <= px.MAX_ADDRS_PER_PEER
    assert all(isinstance(a, str) and a.startswith("/") and "/p2p/" not in a for a in addrs)


@given(responses_like)
@FUZZ
def test_parse_response_raises_only_wire_error(payload: object) -> None:
    try:
        hints = px.parse_response(through_the_wire(payload))
    except WireError:
        return
    assert len(hints) <= px.MAX_PEERS_PER_REPLY
    for hint in hints:
        assert hint.node_id in NODE_IDS or hint.node_id.startswith("12D3KooW")
        assert len(hint.addrs) <= px.MAX_ADDRS_PER_PEER


@pytest.mark.parametrize(
    "payload",
    [
        None,
        [],
        {},
        {"addrs": "/ip4/1.2.3.4/tcp/1"},
        {"addrs": [1]},
        {"addrs": ["/ip4/1.2.3.4/tcp/1"], "extra": 1},
        {"addrs": ["relative/addr"]},
        {"addrs": ["/ip4/1.2.3.4/tcp/1/p2p/" + NODE_IDS[0]]},
        {"addrs": ["/" + "a" * px.MAX_ADDR_LEN]},
        {"addrs": ["/ip4/1.2.3.4/tcp/1"] * (px.MAX_ADDRS_PER_PEER + 1)},
    ],
)
def test_malformed_requests(payload: object) -> None:
    with pytest.raises(WireError):
        px.parse_request(payload)


@pytest.mark.parametrize(
    "payload",
    [
        None,
        {"peers": {}},
        {"peers": [None]},
        {"peers": [{"id": NODE_IDS[0]}]},
        {"peers": [{"id": NODE_IDS[0], "addrs": [], "x": 1}]},
        {"peers": [{"id": 5, "addrs": []}]},
        {"peers": [{"id": "not-base58-0OIl", "addrs": []}]},
        {"peers": [{"id": "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N", "addrs": []}]},  # RSA id
        {"peers": [{"id": NODE_IDS[0], "addrs": [b"/ip4/1.2.3.4/tcp/1"]}]},
        {"peers": [{"id": NODE_IDS[0], "addrs": []}] * (px.MAX_PEERS_PER_REPLY + 1)},
    ],
)
def test_malformed_responses(payload: object) -> None:
    with pytest.raises(WireError):
        px.parse_response(payload)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(NODE_IDS),
            st.lists(st.integers(1, 65535).map(lambda p: f"/ip4/127.0.0.1/tcp/{p}"), max_size=10),
        ),
        max_size=80,
    ),
    st.lists(st.integers(1, 65535).map(lambda p: f"/ip4/10.0.0.1/tcp/{p}"), max_size=12),
)
@FUZZ
def test_made_messages_parse_back_truncated_to_the_limits(
    peers: list[tuple[str, list[str]]], my_addrs: list[str]
) -> None:
    hints = [px.PeerHint(node_id, tuple(addrs)) for node_id, addrs in peers]
    parsed = px.parse_response(through_the_wire(px.make_response(hints)))
    expected = [
        px.PeerHint(h.node_id, h.addrs[: px.MAX_ADDRS_PER_PEER]) for h in hints[: px.MAX_PEERS_PER_REPLY]
    ]
    assert parsed == expected
    request = through_the_wire(px.make_request(my_addrs))
    assert px.parse_request(request) == tuple(my_addrs[: px.MAX_ADDRS_PER_PEER])
    assert len(wire.encode(px.make_request(my_addrs))) <= px.PX.max_request_size


def test_a_full_response_fits_the_protocol_limit() -> None:
    long_addr = "/ip4/255.255.255.255/tcp/65535" + "/ws" * 50
    hints = [px.PeerHint(NODE_IDS[0], (long_addr[: px.MAX_ADDR_LEN],) * 100)] * 100
    assert len(wire.encode(px.make_response(hints))) <= px.PX.max_response_size


# -- backoff -------------------------------------------------------------------------


class Fixed(random.Random):
    """An rng whose uniform(a, b) always returns the point ``t`` of the interval."""

    def __init__(self, t: float) -> None:
        super().__init__(0)
        self.t = t

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.t


bases = st.floats(0.01, 10.0)
caps = st.floats(0.01, 600.0)


@given(st.integers(0, 10_000), bases, caps, st.integers(0, 2**32))
@FUZZ
def test_delay_is_within_jitter_of_the_capped_exponential(failures: int, base: float, cap: float, seed: int) -> None:
    delay = redial_delay(failures, base=base, cap=cap, rng=random.Random(seed))
    nominal = min(cap, base * 2 ** min(failures, 32))
    assert 0.8 * nominal <= delay <= min(cap, 1.2 * nominal) + 1e-9
    assert delay <= cap


@given(bases, caps)
@FUZZ
def test_delays_double_until_the_cap_then_stay(base: float, cap: float) -> None:
    mid = Fixed(0.5)  # jitter factor exactly 1.0
    delays = [redial_delay(f, base=base, cap=cap, rng=mid) for f in range(40)]
    for f, (before, after) in enumerate(zip(delays, delays[1:])):
        assert after >= before
        if after < cap:
            assert after == pytest.approx(2 * before)
    assert delays[0] == pytest.approx(min(base, cap))
    assert delays[-1] == pytest.approx(cap)


@pytest.mark.parametrize("t", [0.0, 1.0])
def test_jitter_extremes(t: float) -> None:
    factor = 0.8 + 0.4 * t
    assert redial_delay(0, base=1.0, cap=30.0, rng=Fixed(t)) == pytest.approx(factor)
    assert redial_delay(3, base=1.0, cap=30.0, rng=Fixed(t)) == pytest.approx(8 * factor)
    assert redial_delay(100, base=1.0, cap=30.0, rng=Fixed(t)) == pytest.approx(30.0 * min(factor, 1.0))


def test_default_rng_spreads_delays() -> None:
    delays = {redial_delay(2) for _ in range(50)}
    assert len(delays) > 1
    assert all(0.8 * 2.0 <= d <= 1.2 * 2.0 for d in delays)
