"""The dashboard's HTML, server-rendered from a :class:`~yagna.api.dashboard.collect.Snapshot`.

Every value goes through :func:`~yagna.api.dashboard.markup.tag`, which escapes
it; long strings from peers are clipped. Sections appear for what the node
does: offers, earnings and payments per requestor when it sells; spend,
providers used and reputation when it buys.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from yagna.api.dashboard.chart import Series, bar_chart, bucketize
from yagna.api.dashboard.collect import AGREEMENTS_SHOWN, CHANNELS_SHOWN, Snapshot
from yagna.api.dashboard.markup import Html, clip, join, tag
from yagna.api.dashboard.sessions import TOKEN_TTL_S
from yagna.api.dashboard.summary import ActivityRow, payment_events, per_peer, voucher_totals
from yagna.core.money import format_amount

STATIC = "/dashboard/static"
REFRESH_S = 5


def _when(t: object) -> str:
    if not isinstance(t, (int, float)) or isinstance(t, bool):
        return ""
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))
    except (OverflowError, OSError, ValueError):
        return "?"


def _amount(units: object) -> str:
    return format_amount(units) if isinstance(units, int) and not isinstance(units, bool) and units >= 0 else "?"


def _short(node_id: object) -> Html:
    """A node or object id shortened for the eye, the whole of it in the tooltip."""
    text = str(node_id or "")
    return tag("span", clip(text, 16), title=clip(text, 200), class_="id")


def _price(pricing: object) -> str:
    """A preset's linear pricing as people read it: the start fee, per CPU-hour and per hour."""
    if not isinstance(pricing, dict):
        return ""
    out = []
    for key, label, factor in (("start_fee", "start", 1), ("per_cpu_sec", "per CPU-hour", 3600),
                               ("per_duration_sec", "per hour", 3600)):
        try:
            # display only: prices per second in base units do not divide into round hourly figures
            value = f"{float(Decimal(str(pricing[key])) * factor):.6g}"
        except (KeyError, InvalidOperation):
            continue
        out.append(f"{value} {label}")
    return "; ".join(out)


def _capacity(c: object) -> str:
    if not isinstance(c, dict):
        return "?"
    return f"{c.get('threads')} threads, {_num(c.get('mem_gib'))} GiB memory, {_num(c.get('storage_gib'))} GiB disk"


def _num(value: object, digits: int = 1) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return ""
    return f"{value:.{digits}f}"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, empty: str, tbody_id: str | None = None) -> Html:
    body = [tag("tr", *(tag("td", cell) for cell in row)) for row in rows]
    if not body:
        body = [tag("tr", tag("td", empty, colspan=len(headers), class_="empty"))]
    return tag("table", tag("thead", tag("tr", *(tag("th", h) for h in headers))), tag("tbody", *body, id=tbody_id))


def section(anchor: str, title: str, *content: object) -> Html:
    return tag("section", tag("h2", title), *content, id=anchor)


def facts(items: Iterable[tuple[str, object]]) -> Html:
    return tag("dl", *(join([tag("dt", k), tag("dd", v)]) for k, v in items))


# -- sections -------------------------------------------------------------------------------
def header(s: Snapshot) -> Html:
    n = s.node
    return tag("header", tag("h1", "yagna node ", tag("code", n["node_id"], id="node-id")), facts([
        ("role", n["role"]), ("version", n["version"]),
        ("reachability", tag("span", n.get("reachability") or "unknown", id="reachability")),
        ("peers", tag("span", f"{n.get('connected', 0)} connected, {n.get('known', 0)} known", id="peers")),
        ("advertised", join([tag("code", clip(a, 120)) for a in n["advertised_addrs"]], " ") or "none"),
    ]))


def offers(s: Snapshot) -> Html:
    p = s.provider or {}
    presets = [(x.get("name"), x.get("runtime"), x.get("threads"), x.get("mem_gib"), x.get("storage_gib"),
                _price(x.get("pricing")), x.get("subnet"),
                _short(x["offer_id"]) if x.get("offer_id") else "not offered")
               for x in p.get("presets") or []]
    live = [(_short(o["offer_id"]), o.get("subnet"), o.get("properties", {}).get("yagna.preset", ""),
             _when((o.get("expires_at_ms") or 0) / 1000)) for o in s.own_offers]
    return section("offers", "Presets and offers",
                   facts([("capacity for sale", _capacity(p.get("capacity"))),
                          ("committed to agreements", _capacity(p.get("committed"))),
                          ("agreements running", p.get("active_agreements", 0)),
                          ("offers seen on the network", s.offers_seen)]),
                   tag("h3", "Presets"),
                   table(("preset", "runtime", "threads", "memory GiB", "disk GiB", "price", "subnet", "live offer"),
                         presets, empty="no preset: nothing is offered (yagna provider preset create)"),
                   tag("h3", "Live offers"),
                   table(("offer", "subnet", "preset", "expires (UTC)"), live, empty="no live offer"))


def activity_cells(a: ActivityRow) -> list[object]:
    return [a.side, _short(a.activity_id), _short(a.agreement_id), _short(a.peer_id),
            tag("span", a.state, class_=f"state {a.state}"), _num(a.cpu_s), _num(a.mem_gib, 3), _num(a.elapsed_s),
            clip(a.reason or "", 120)]


ACTIVITY_HEADERS = ("side", "activity", "agreement", "peer", "state", "CPU s", "peak memory GiB", "elapsed s", "reason")


def activities(s: Snapshot) -> Html:
    running = sum(a.running for a in s.activities)
    return section("activities", "Activities",
                   tag("p", tag("span", str(running), id="running-count"), " running; the newest ",
                       str(len(s.activities)), " listed, running first (usage refreshes every ", str(REFRESH_S), " s)."),
                   table(ACTIVITY_HEADERS, (activity_cells(a) for a in s.activities), empty="no activity yet",
                         tbody_id="activity-rows"))


def _chart(channels: list[dict[str, Any]], role: str, title: str, labels: tuple[str, str], now: float) -> Html:
    buckets = bucketize(payment_events(channels, role), series=2, now=now)
    series = [Series(labels[0], "#2b7a3d"), Series(labels[1], "#8fc99a")]  # indexed by EARNED, HELD
    return bar_chart(buckets, series, title=title, fmt=format_amount, empty="no payments yet")


def _legend(closed: str, open_: str) -> Html:
    return tag("p", tag("span", "■", class_="key closed"), f" {closed} ", tag("span", "■", class_="key open"),
               f" {open_}", class_="legend")


def earnings(s: Snapshot) -> Html:
    channels = s.payments.get("agreements") or []
    redeemed, held = voucher_totals(channels, "provider")
    balance = s.payments.get("balance") or {}
    return section("earnings", "Earnings",
                   facts([("redeemed", _amount(redeemed)), ("held in vouchers (not yet redeemed)", _amount(held)),
                          ("earned (settlement driver)", balance.get("earned", "?"))]),
                   _chart(channels, "provider", "Earnings per time bucket (UTC): redeemed and held",
                          ("redeemed", "held"), s.generated_at),
                   _legend("redeemed (at the channel's close)", "held in a voucher, not yet redeemed (at its last change)"))


def spend(s: Snapshot) -> Html:
    channels = s.payments.get("agreements") or []
    settled, open_ = voucher_totals(channels, "requestor")
    balance = s.payments.get("balance") or {}
    return section("spend", "Spend",
                   facts([("settled", _amount(settled)), ("signed on open agreements", _amount(open_)),
                          ("balance", balance.get("total", "?")), ("free", balance.get("free", "?")),
                          ("locked in deposits", balance.get("locked", "?"))]),
                   _chart(channels, "requestor", "Spend per time bucket (UTC): settled and open",
                          ("settled", "open"), s.generated_at),
                   _legend("settled (at the channel's close)", "signed on open agreements (at their last change)"))


def vouchers(s: Snapshot) -> Html:
    channels = (s.payments.get("agreements") or [])[:CHANNELS_SHOWN]
    rows = [(_short(c.get("agreement_id")), "received" if c.get("role") == "provider" else "signed",
             _short(c.get("peer_id")), "redeemed" if c.get("state") == "closed" and c.get("role") == "provider"
             else c.get("state"), c.get("best_seq"), _amount(c.get("paid_units")), _amount(c.get("due_units")),
             c.get("enforcement") or "", clip(c.get("reason") or "", 120), _when(c.get("updated_at")))
            for c in channels]
    driver = s.payments.get("driver", "?")
    note = " (a test network: tokens of no value)" if s.payments.get("test_network") else ""
    return section("vouchers", "Vouchers",
                   tag("p", f"Settlement driver {driver}{note}. One payment channel per agreement; its best "
                            f"voucher is cumulative. The newest {len(channels)} listed."),
                   table(("agreement", "voucher", "counterpart", "state", "seq", "amount", "due", "enforcement",
                          "reason", "last change (UTC)"), rows, empty="no payment channel yet"))


def by_requestor(s: Snapshot) -> Html:
    peers = per_peer(s.payments.get("agreements") or [], "provider", s.activities)
    rows = [(_short(p.peer_id), p.agreements, p.open, p.activities, _amount(p.due_units), _amount(p.paid_units),
             _amount(p.unpaid_units), ", ".join(sorted(p.states))) for p in peers]
    return section("by-requestor", "Payments per requestor",
                   table(("requestor", "agreements", "open", "activities listed", "due", "paid", "unpaid",
                          "enforcement"), rows, empty="no requestor yet"))


def by_provider(s: Snapshot) -> Html:
    peers = per_peer(s.payments.get("agreements") or [], "requestor", s.activities)
    scores = {str(r.get("provider_id")): r.get("reputation") for r in s.reputation or []}
    rows = [(_short(p.peer_id), p.agreements, p.open, p.activities, _amount(p.paid_units),
             scores.get(p.peer_id, "")) for p in peers]
    return section("by-provider", "Providers used",
                   tag("p", f"{len(peers)} provider(s) used."),
                   table(("provider", "agreements", "open", "jobs (activities listed)", "spent", "reputation"),
                         rows, empty="no provider used yet"))


def agreements(s: Snapshot) -> Html:
    counts = ", ".join(f"{n} {state}" for state, n in sorted(s.agreement_counts.items())) or "none"
    rows = [(_short(a.get("agreement_id")), a.get("role"),
             _short(a.get("requestor_id") if a.get("role") == "provider" else a.get("provider_id")),
             tag("span", a.get("state"), class_="state"), clip(a.get("reason") or "", 120), _when(a.get("created_at")),
             _when(a.get("updated_at")))
            for a in s.agreements]
    return section("agreements", "Agreements",
                   tag("p", f"All agreements by state: {counts}. The newest {min(len(rows), AGREEMENTS_SHOWN)} listed."),
                   table(("agreement", "our role", "counterpart", "state", "reason", "created (UTC)", "changed (UTC)"),
                         rows, empty="no agreement yet"))


def reputation(s: Snapshot) -> Html:
    rows = [(_short(r.get("provider_id")), r.get("reputation"), r.get("successes"), r.get("failures"),
             r.get("timeouts"), r.get("disagreements"), r.get("rejections"),
             _num(r["latency_ms"], 0) if isinstance(r.get("latency_ms"), (int, float)) else "")
            for r in s.reputation or []]
    return section("reputation", "Reputation (this node's own records)",
                   table(("provider", "score", "successes", "failures", "timeouts", "disagreements", "rejections",
                          "latency ms"), rows, empty="no provider record yet"))


def errors(s: Snapshot) -> Html:
    rows = [(_when(e.created), tag("span", e.level, class_=f"level {e.level.lower()}"), e.logger, clip(e.message, 500))
            for e in s.errors]
    return section("errors", "Recent warnings and errors",
                   table(("time (UTC)", "level", "logger", "message"), rows, empty="none since the node started"))


def page(s: Snapshot) -> Html:
    parts: list[object] = [header(s)]
    if s.sells:
        parts.append(offers(s))
    parts.append(activities(s))
    if s.sells:
        parts.append(earnings(s))
    if s.buys:
        parts.append(spend(s))
    parts.append(vouchers(s))
    if s.sells:
        parts.append(by_requestor(s))
    if s.buys:
        parts.append(by_provider(s))
    parts.append(agreements(s))
    if s.buys:
        parts.append(reputation(s))
    parts.append(errors(s))
    parts.append(tag("footer", f"Rendered {_when(s.generated_at)} UTC; activities and peers updated: ",
                     tag("span", "at render", id="updated"), "."))
    return document(f"yagna {clip(s.node['node_id'], 20)}", tag("main", *parts), script=True)


def document(title: str, body: Html, *, script: bool = False) -> Html:
    head = tag("head", tag("meta", charset="utf-8"), tag("meta", name="viewport", content="width=device-width"),
               tag("title", title), tag("link", rel="stylesheet", href=f"{STATIC}/dashboard.css"))
    tail = tag("script", src=f"{STATIC}/dashboard.js", defer=True) if script else Html("")
    return Html("<!doctype html>\n" + tag("html", head, tag("body", body, tail), lang="en"))


def message_page(title: str, text: str) -> Html:
    """A page for a refused login or a missing session: what happened and what to do."""
    return document(title, tag("main", tag("h1", title), tag("p", text),
                               tag("p", "Run ", tag("code", "yagna dashboard"), " on the node's machine for a new link "
                                   f"(it works once, for {TOKEN_TTL_S:.0f} s).")))
