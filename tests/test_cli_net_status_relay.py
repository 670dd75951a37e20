"""``yagna net status`` text lines for the relay service and hole punching."""

from yagna.cli.main import _relay_lines


def test_lines_for_a_private_node_with_reservations_and_punches() -> None:
    lines = _relay_lines({
        "relay": {"serving": False, "reservations": ["12D3KooWR1", "12D3KooWR2"]},
        "hole_punching": {"enabled": True, "active": 1, "attempts": 4, "succeeded": 2, "failed": 1, "refused": 3},
    })
    assert lines == [
        "relay:        not serving; reservations: 12D3KooWR1, 12D3KooWR2",
        "hole punch:   2 succeeded, 1 failed, 3 refused, 1 in progress",
    ]


def test_lines_for_a_public_relay_with_hole_punching_off_and_an_older_daemon() -> None:
    assert _relay_lines({"relay": {"serving": True, "reservations": []}, "hole_punching": {"enabled": False}}) == [
        "relay:        serving; reservations: none", "hole punch:   off"]
    assert _relay_lines({}) == []
