"""The partial-mesh dial policy (yagna/net/mesh.py)."""

import random

import pytest

from yagna.net.mesh import Candidate, Connection, MeshLimits, choose_dials, choose_prunes


def peers(n: int, **kw: object) -> list[Candidate]:
    return [Candidate(f"p{i}", **kw) for i in range(n)]  # type: ignore[arg-type]


def test_dials_up_to_target_not_everyone() -> None:
    dials = choose_dials(peers(30), MeshLimits(target=8), random.Random(1))
    assert len(dials) == 8
    assert len(set(dials)) == 8


def test_connected_and_dialing_count_toward_target() -> None:
    known = peers(5, connected=True) + [Candidate("d", dialing=True)] + [Candidate(f"x{i}") for i in range(20)]
    dials = choose_dials(known, MeshLimits(target=8), random.Random(1))
    assert len(dials) == 2
    assert all(d.startswith("x") for d in dials)


def test_bootstrap_peers_are_always_dialed_even_beyond_target() -> None:
    known = peers(8, connected=True) + [Candidate("boot", bootstrap=True)] + [Candidate("other")]
    assert choose_dials(known, MeshLimits(target=8), random.Random(1)) == ["boot"]


def test_bootstrap_dials_stop_at_max_peers() -> None:
    known = peers(4, connected=True) + [Candidate(f"b{i}", bootstrap=True) for i in range(3)]
    assert len(choose_dials(known, MeshLimits(target=2, max_peers=5), random.Random(1))) == 1


def test_undialable_peers_are_skipped() -> None:
    known = [Candidate("a", dialable=False), Candidate("b", dialable=False, bootstrap=True), Candidate("c")]
    assert choose_dials(known, MeshLimits(target=8), random.Random(1)) == ["c"]


def test_reliable_peers_first_random_among_equals() -> None:
    known = [Candidate("flaky", failures=5)] + peers(3)
    seen = set()
    for seed in range(20):
        dials = choose_dials(known, MeshLimits(target=2), random.Random(seed))
        assert "flaky" not in dials
        seen.update(dials)
    assert seen == {"p0", "p1", "p2"}  # not always the same two


def test_choice_differs_between_nodes_so_the_overlay_is_random() -> None:
    known = peers(50)
    picks = {tuple(sorted(choose_dials(known, MeshLimits(target=8), random.Random(s)))) for s in range(10)}
    assert len(picks) == 10


def test_prunes_newest_unprotected_above_max() -> None:
    conns = [Connection(f"c{i}", since=float(i)) for i in range(6)]
    conns[5] = Connection("c5", since=5.0, protected=True)
    conns[4] = Connection("c4", since=4.0, bootstrap=True)
    assert choose_prunes(conns, MeshLimits(target=2, max_peers=3)) == ["c3", "c2", "c1"]


def test_no_prunes_within_max() -> None:
    assert choose_prunes([Connection("a", 1.0)], MeshLimits(target=1, max_peers=1)) == []


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError):
        MeshLimits(target=0)
    with pytest.raises(ValueError):
        MeshLimits(target=10, max_peers=5)
