"""The relay service on real py-libp2p hosts (loopback): reservations, hostile hop streams."""

from __future__ import annotations

import os

import trio

from yagna.net.network import Network

from .conformance import fast_config, start_stoppable


async def _until(pred: object, timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while not pred():  # type: ignore[operator]
            await trio.sleep(0.05)


async def test_a_nat_client_reserves_on_relays_and_publishes_its_circuit_addrs() -> None:
    async with trio.open_nursery() as nursery:
        relays = []
        for _ in range(2):
            r = Network(os.urandom(32), fast_config(relay_service="on"))
            await start_stoppable(nursery, r)
            relays.append(r)
        client = Network(os.urandom(32), fast_config(bootstrap=[r.full_addrs()[0] for r in relays]))
        client.addresses.nat_detected = lambda: True  # type: ignore[method-assign]
        client.relay.poll = 0.2
        await start_stoppable(nursery, client)
        await _until(lambda: all(r.relay.serving for r in relays))
        await _until(lambda: len(client.relay.keeper.relays()) == 2)
        assert client.relay.keeper.relays() == sorted(r.node_id for r in relays)
        assert any("/p2p-circuit" in a for a in client.relay.keeper.relay_addrs())
        assert any("/p2p-circuit" in a for a in client.addresses.relay_addrs())
        nursery.cancel_scope.cancel()


async def test_hostile_hop_streams_do_not_end_the_relay() -> None:
    from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID

    async with trio.open_nursery() as nursery:
        relay = Network(os.urandom(32), fast_config(relay_service="on"))
        await start_stoppable(nursery, relay)
        await _until(lambda: relay.relay.serving)
        evil = Network(os.urandom(32), fast_config(bootstrap=[relay.full_addrs()[0]]))
        await start_stoppable(nursery, evil)
        await _until(lambda: relay.host.get_id() in evil.host.get_connected_peers())
        garbage = [b"", b"\x00", b"\xff\xff\xff\xff\x0f", b"\x05hello", os.urandom(300),
                   b"\x80\x80\x04" + b"A" * 100, b"\x02\x08\x01", b"\x04\x08\x01\x12\x00"]
        for blob in garbage:
            try:  # refused once 4 of ours are still open on the relay (the per-peer cap)
                stream = await evil.host.new_stream(relay.host.get_id(), [PROTOCOL_ID])
            except Exception:
                continue
            try:
                await stream.write(blob)
                with trio.move_on_after(0.5):
                    await stream.read(1024)
            except Exception:
                pass
            finally:
                try:
                    await stream.reset()
                except Exception:
                    pass
        # still serving and answering others
        assert relay.relay.serving
        other = Network(os.urandom(32), fast_config(bootstrap=[relay.full_addrs()[0]]))
        await start_stoppable(nursery, other)
        await _until(lambda: relay.host.get_id() in other.host.get_connected_peers())
        good = await other.relay._reserve(relay.node_id)
        assert good[0] > 0
        nursery.cancel_scope.cancel()


async def test_a_peer_known_only_by_circuit_addrs_is_dialled_through_the_relay() -> None:
    from yagna.net.reqresp import ProtocolSpec

    async with trio.open_nursery() as nursery:
        relay = Network(os.urandom(32), fast_config(relay_service="on"))
        await start_stoppable(nursery, relay)
        behind = Network(os.urandom(32), fast_config(bootstrap=[relay.full_addrs()[0]]))
        behind.addresses.nat_detected = lambda: True  # type: ignore[method-assign]
        behind.relay.poll = 0.2
        await start_stoppable(nursery, behind)
        await _until(lambda: len(behind.relay.keeper.relays()) == 1)
        circuit = behind.relay.keeper.relay_addrs()
        dialler = Network(os.urandom(32), fast_config())
        await start_stoppable(nursery, dialler)
        await dialler.relay.ready.wait()
        await dialler.relay.dial(behind.node_id, circuit)
        assert behind.host.get_id() in dialler.host.get_connected_peers()
        conns = dialler.host.get_network().connections[behind.host.get_id()]
        circuits = [str(a) for c in conns for a in c.get_transport_addresses() if "/p2p-circuit" in str(a)]
        assert circuits and f"/p2p/{relay.node_id}/p2p-circuit" in circuits[0]
        # the destination's side names the relay too (py-libp2p tagged it with our own id)
        back = behind.host.get_network().connections[dialler.host.get_id()]
        tags = [str(a) for c in back for a in c.get_transport_addresses() if "/p2p-circuit" in str(a)]
        assert tags and all(t.startswith(f"/p2p/{relay.node_id}/p2p-circuit") for t in tags), tags
        # (on loopback peer exchange then teaches a direct address too, so the view may say direct)
        nursery.cancel_scope.cancel()


def test_the_view_names_the_relay_of_a_circuit_address() -> None:
    from yagna.net.addresses import relay_id_of as _relay_of

    assert _relay_of("/p2p/RELAY/p2p-circuit/p2p/DEST") == "RELAY"
    assert _relay_of("/ip4/1.2.3.4/tcp/1/p2p/RELAY/p2p-circuit") == "RELAY"
    assert _relay_of("/ip4/1.2.3.4/tcp/1") is None
    assert _relay_of("/p2p-circuit/p2p/DEST") == ""


async def test_more_hop_streams_than_the_per_peer_cap_are_reset() -> None:
    from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID

    from yagna.net.relay_core import RelayLimits

    async with trio.open_nursery() as nursery:
        relay = Network(os.urandom(32), fast_config(relay_service="on", relay_limits=RelayLimits(circuits_per_peer=2)))
        await start_stoppable(nursery, relay)
        await _until(lambda: relay.relay.serving)
        evil = Network(os.urandom(32), fast_config(bootstrap=[relay.full_addrs()[0]]))
        await start_stoppable(nursery, evil)
        await _until(lambda: relay.host.get_id() in evil.host.get_connected_peers())
        held = [await evil.host.new_stream(relay.host.get_id(), [PROTOCOL_ID]) for _ in range(2)]
        await trio.sleep(0.3)
        ended = False
        with trio.move_on_after(5):
            try:
                extra = await evil.host.new_stream(relay.host.get_id(), [PROTOCOL_ID])
                ended = await extra.read(1) == b""
            except Exception:
                ended = True
        assert ended
        for s in held:
            await s.reset()
        nursery.cancel_scope.cancel()
