"""``yagna market status`` text: the anti-entropy counters (--json has them as they are)."""

from yagna.cli.market_cmd import status_text

BASE = {"network_id": "testnet", "subnets": ["public"], "offers_known": 24, "accepted": 30, "replaced": 2,
        "withdrawn": 1, "refused": 0, "synced": 5, "demands": 0}


def test_the_repair_line_shows_the_anti_entropy_counters() -> None:
    text = status_text({**BASE, "anti_entropy": {"rounds": 40, "equal": 37, "failed": 1, "pulled": 6,
                                                 "refused": 0, "served": 41, "busy": 2}})
    assert text.splitlines()[-1] == (
        "repair:    40 anti-entropy rounds (37 in sync, 1 failed), 6 pulled, 0 refused; served 41, 2 over budget")
    assert text.splitlines()[1].startswith("offers:    24 known")


def test_an_older_daemon_without_the_counters_gets_no_repair_line() -> None:
    assert "repair" not in status_text(BASE)
