"""Repositories: app keys, peers, settings."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from yagna.store import AppKeyExists, AppKeys, Peers, Settings, Store, StoreError
from yagna.store.repos import hash_token, merge_addrs


class FakeClock:
    def __init__(self, t: float = 1_700_000_000) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with Store.open_ctx(tmp_path / "node.db") as s:
        yield s


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# ---------------------------------------------------------------------- app keys


async def test_app_keys_create_list_check_drop(store: Store, clock: FakeClock) -> None:
    keys = AppKeys(store, clock=clock)
    info, token = await keys.create("alice")
    assert token.startswith("yk_") and len(token) > 40
    assert info.name == "alice" and info.created_at == int(clock.t) and info.last_used_at is None

    with pytest.raises(AppKeyExists, match="already exists"):
        await keys.create("alice")
    _, token_b = await keys.create("bob")
    assert token_b != token

    assert [k.name for k in await keys.list()] == ["alice", "bob"]

    checked = await keys.check(token)
    assert checked is not None and checked.id == info.id and checked.last_used_at == int(clock.t)
    assert await keys.check(token + "x") is None
    assert await keys.check("not-a-token") is None
    assert await keys.check("") is None

    assert await keys.drop("alice") is True
    assert await keys.drop("alice") is False
    assert await keys.check(token) is None
    assert [k.name for k in await keys.list()] == ["bob"]

    with pytest.raises(ValueError):
        await keys.create("")
    with pytest.raises(ValueError):
        await keys.create(" padded ")


async def test_last_used_is_written_at_most_once_a_minute(store: Store, clock: FakeClock) -> None:
    keys = AppKeys(store, clock=clock)
    _, token = await keys.create("k")
    first = await keys.check(token)
    assert first is not None and first.last_used_at == int(clock.t)
    clock.t += 30
    again = await keys.check(token)
    assert again is not None and again.last_used_at == first.last_used_at
    clock.t += 30
    later = await keys.check(token)
    assert later is not None and later.last_used_at == int(clock.t)
    assert (await keys.get("k")) == later


async def test_token_is_never_stored(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    async with Store.open_ctx(path) as store:
        keys = AppKeys(store)
        _, token = await keys.create("cli")
        local = await keys.ensure_local_key("local", tmp_path / "appkey")
        files = [p for p in tmp_path.iterdir() if p.name.startswith("node.db")]
        live = b"".join(p.read_bytes() for p in files)  # db + -wal + -shm while open
        for t in (token, local):
            assert t.encode() not in live
    on_disk = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("node.db"))
    assert hash_token(token) in on_disk  # the hash is what is kept
    for t in (token, local):
        assert t.encode() not in on_disk
        assert t.split("_", 1)[1].encode() not in on_disk


async def test_ensure_local_key(store: Store, tmp_path: Path) -> None:
    keys = AppKeys(store)
    token_file = tmp_path / "appkey"

    token = await keys.ensure_local_key("local", token_file)
    assert token_file.read_text().strip() == token
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert (await keys.check(token)) is not None

    # stable across calls (and restarts) while file and row agree
    assert await keys.ensure_local_key("local", token_file) == token
    assert [k.name for k in await keys.list()] == ["local"]

    # the row was dropped: a fresh key replaces the file
    await keys.drop("local")
    token2 = await keys.ensure_local_key("local", token_file)
    assert token2 != token and token_file.read_text().strip() == token2
    assert await keys.check(token) is None

    # the file was lost: the stale row under that name is replaced, not duplicated
    token_file.unlink()
    token3 = await keys.ensure_local_key("local", token_file)
    assert token3 != token2
    assert await keys.check(token2) is None
    assert [k.name for k in await keys.list()] == ["local"]

    # a file holding another key's token is not accepted for this name
    _, other = await keys.create("other")
    token_file.write_text(other)
    token4 = await keys.ensure_local_key("local", token_file)
    assert token4 != other and (await keys.check(other)) is not None

    # loose permissions on an existing file are tightened
    token_file.chmod(0o644)
    assert await keys.ensure_local_key("local", token_file) == token4
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600

    # no stray temp files left behind
    assert sorted(p.name for p in tmp_path.iterdir() if "appkey" in p.name) == ["appkey"]


async def test_ensure_local_key_unwritable_location(store: Store, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot (read|write) the local app key file"):
        await AppKeys(store).ensure_local_key("local", blocker / "appkey")


# ---------------------------------------------------------------------- peers


async def test_peers_upsert_list_failures(store: Store, clock: FakeClock) -> None:
    peers = Peers(store, clock=clock)
    t0 = int(clock.t)
    rec = await peers.upsert("12D3KooA", ["/ip4/1.2.3.4/tcp/1"], "bootstrap")
    assert rec.first_seen == rec.last_seen == t0 and rec.failures == 0 and rec.last_connected is None
    assert await peers.get("12D3KooA") == rec

    clock.t += 10
    rec = await peers.upsert("12D3KooA", ["/ip4/5.6.7.8/tcp/1", "/ip4/1.2.3.4/tcp/1"], "px")
    assert rec.addrs == ("/ip4/5.6.7.8/tcp/1", "/ip4/1.2.3.4/tcp/1")
    assert rec.source == "bootstrap"  # stays a bootstrap peer
    assert rec.first_seen == t0 and rec.last_seen == t0 + 10
    assert await peers.get("12D3KooA") == rec

    await peers.upsert("12D3KooB", ["/ip4/9.9.9.9/tcp/1"], "inbound")
    await peers.upsert("12D3KooC", [], "px")

    assert await peers.mark_failure("12D3KooA") == 1
    assert await peers.mark_failure("12D3KooA") == 2
    assert await peers.mark_failure("unknown") is None
    clock.t += 5
    assert await peers.mark_connected("12D3KooB") is True
    assert await peers.mark_connected("unknown") is False

    listed = await peers.list()
    assert [p.node_id for p in listed] == ["12D3KooB", "12D3KooC", "12D3KooA"]
    assert listed[0].last_connected == int(clock.t) and listed[2].failures == 2
    assert len(await peers.list(limit=1)) == 1

    assert await peers.mark_connected("12D3KooA")
    a = await peers.get("12D3KooA")
    assert a is not None and a.failures == 0

    with pytest.raises(ValueError):
        await peers.upsert("x", [], "gossip")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await peers.upsert("x", "/ip4/1.2.3.4/tcp/1", "px")  # type: ignore[arg-type]


async def test_peers_forget_stale(store: Store, clock: FakeClock) -> None:
    peers = Peers(store, clock=clock)
    await peers.upsert("old", [], "px")
    clock.t += 3600
    await peers.upsert("new", [], "px")
    clock.t += 10
    assert await peers.forget_stale(older_than_s=60) == 1
    assert [p.node_id for p in await peers.list()] == ["new"]
    assert await peers.get("old") is None


def test_merge_addrs_is_bounded_and_ordered() -> None:
    assert merge_addrs(["b", "a"], ["a", "c"]) == ["b", "a", "c"]
    assert len(merge_addrs([str(i) for i in range(50)], ["x"])) == 16


# ---------------------------------------------------------------------- settings


async def test_settings(store: Store) -> None:
    settings = Settings(store)
    assert await settings.get("missing") is None
    assert await settings.get("missing", "dflt") == "dflt"
    await settings.set("node.name", "alpha")
    await settings.set("node.name", "beta")
    assert await settings.get("node.name") == "beta"
    assert await settings.delete("node.name") is True
    assert await settings.delete("node.name") is False
    with pytest.raises(TypeError):
        await settings.set("n", 3)  # type: ignore[arg-type]


async def test_peers_keep_best_bounds_the_book(store: Store, clock: FakeClock) -> None:
    peers = Peers(store, clock=clock)
    ids = [f"peer{i}" for i in range(6)]
    for i, nid in enumerate(ids):
        await peers.upsert(nid, [f"/ip4/127.0.0.1/tcp/{4000 + i}"], "px")
        clock.t += 1
    await peers.mark_connected(ids[0])
    await peers.mark_failure(ids[5])
    assert await peers.keep_best(3) == 3
    kept = [p.node_id for p in await peers.list()]
    assert len(kept) == 3 and ids[0] == kept[0] and ids[5] not in kept
