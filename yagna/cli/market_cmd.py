"""``yagna market ...`` and ``yagna provider ...``: the market from the command line.

Both talk to the running node over its REST API (``yagna service run``).
Prices on the command line are decimal token amounts per hour (Golem's
habit: 0.025 per CPU-hour); offers carry them per second in base units.
"""

from __future__ import annotations

import json
import time
from typing import Any, cast

import click

from yagna.cli.output import emit

from yagna.core.errors import YagnaError


def _hourly(units_per_sec: int) -> str:
    """Per-second base units as tokens per hour, rounded to 1e-9 (per-second prices are floored on entry)."""
    from yagna.core.money import UNIT, format_amount

    per_hour = units_per_sec * 3600
    step = UNIT // 10**9
    return format_amount((per_hour + step // 2) // step * step)


def _per_hour(per_sec: str) -> str:
    from yagna.core.money import parse_amount

    return _hourly(parse_amount(per_sec))


def _per_sec(per_hour: str) -> str:
    from yagna.core.money import format_amount, parse_amount

    return format_amount(parse_amount(per_hour) // 3600)


def _price_line(props: dict[str, Any]) -> str:
    from yagna.core.money import format_amount

    coeffs = props.get("golem.com.pricing.model.linear.coeffs")
    vector = props.get("golem.com.usage.vector")
    if not (isinstance(coeffs, list) and isinstance(vector, list) and len(coeffs) == len(vector) + 1):
        return "?"
    by = dict(zip(vector, coeffs, strict=False))
    cpu = _hourly(int(by.get("golem.usage.cpu_sec", 0)))
    dur = _hourly(int(by.get("golem.usage.duration_sec", 0)))
    return f"{cpu}/cpu-h {dur}/h start {format_amount(int(coeffs[-1]))}"


# -- market ----------------------------------------------------------------------------------
@click.group()
def market() -> None:
    """Offers, demands and agreements."""


@market.command("offers")
@click.option("--subnet", help="Only offers of this subnet.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def market_offers(obj: Any, subnet: str | None, as_json: bool) -> None:
    """Live offers this node knows (signed, verified)."""
    offers = obj.client().call("GET", "/market/offers", params={"subnet": subnet} if subnet else {})
    lines = [f"{'OFFER':14} {'PROVIDER':54} {'SUBNET':10} {'THR':>4} {'MEM':>6} {'DISK':>6}  PRICE"]
    for o in offers:
        p = o["properties"]
        lines.append(
            f"{o['offer_id'][:12]:14} {o['provider_id']:54} {o['subnet']:10} {p.get('golem.inf.cpu.threads', '?'):>4} "
            f"{p.get('golem.inf.mem.gib', '?'):>6} {p.get('golem.inf.storage.gib', '?'):>6}  {_price_line(p)}"
        )
    emit(offers, as_json, "\n".join(lines) if offers else "no offers known")


@market.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def market_status(obj: Any, as_json: bool) -> None:
    """Offer book counters, subnets and penalised peers."""
    s = obj.client().call("GET", "/market/status")
    emit(s, as_json, status_text(s))


def status_text(s: dict[str, Any]) -> str:
    """``market status`` as text; the anti-entropy line when the daemon reports it."""
    lines = [
        f"network:   {s['network_id']}  subnets: {', '.join(s['subnets'])}",
        f"offers:    {s['offers_known']} known ({s['accepted']} accepted, {s['replaced']} re-announced, "
        f"{s['withdrawn']} withdrawn, {s['refused']} refused, {s['synced']} from catch-up)",
        f"demands:   {s['demands']} open",
    ]
    ae = s.get("anti_entropy")
    if isinstance(ae, dict):
        lines.append(
            f"repair:    {ae.get('rounds', 0)} anti-entropy rounds ({ae.get('equal', 0)} in sync, "
            f"{ae.get('failed', 0)} failed), {ae.get('pulled', 0)} pulled, {ae.get('refused', 0)} refused; "
            f"served {ae.get('served', 0)}, {ae.get('busy', 0)} over budget"
        )
    return "\n".join(lines)


@market.command("agreements")
@click.option("--role", type=click.Choice(["requestor", "provider"]), help="Only this side's agreements.")
@click.option("--state", type=click.Choice(["approved", "terminated"]), help="Only agreements in this state.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (includes the co-signed document, base64).")
@click.pass_obj
def market_agreements(obj: Any, role: str | None, state: str | None, as_json: bool) -> None:
    """Agreements this node signed, with their state."""
    params = {k: v for k, v in (("role", role), ("state", state)) if v}
    rows = obj.client().call("GET", "/market/agreements", params=params)
    lines = [f"{'AGREEMENT':14} {'ROLE':10} {'STATE':11} {'PEER':54} REASON"]
    for a in rows:
        peer = a["provider_id"] if a["role"] == "requestor" else a["requestor_id"]
        lines.append(f"{a['agreement_id'][:12]:14} {a['role']:10} {a['state']:11} {peer:54} {a['reason'] or ''}")
    emit(rows, as_json, "\n".join(lines) if rows else "no agreements")


@market.command("negotiate")
@click.option("--constraints", default="", help="LDAP-filter constraints on offers, e.g. '(golem.inf.cpu.threads>=2)'.")
@click.option("--property", "properties", multiple=True, metavar="NAME=JSON", help="A demand property (repeatable); the value is JSON, or a string.")
@click.option("--subnet", default="public", show_default=True)
@click.option("--count", type=int, default=1, show_default=True, help="How many agreements to sign (distinct providers).")
@click.option("--max-cpu-hour", help="Price cap per CPU-hour, in tokens.")
@click.option("--max-hour", help="Price cap per hour of duration, in tokens.")
@click.option("--max-start-fee", help="Price cap on the start fee, in tokens.")
@click.option("--deny", multiple=True, metavar="NODE_ID", help="Never deal with this provider (repeatable).")
@click.option("--wait", type=float, default=1.0, show_default=True, help="Seconds to collect proposals before choosing.")
@click.option("--expiration", type=int, default=1800, show_default=True, help="Agreement lifetime in seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def market_negotiate(obj: Any, constraints: str, properties: tuple[str, ...], subnet: str, count: int,
                     max_cpu_hour: str | None, max_hour: str | None, max_start_fee: str | None,
                     deny: tuple[str, ...], wait: float, expiration: int, as_json: bool) -> None:
    """Publish a demand, collect proposals, and sign agreements with the best providers."""
    props: dict[str, Any] = {}
    for item in properties:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise YagnaError(f"--property {item!r}: expected NAME=VALUE")
        try:
            props[name] = json.loads(value)
        except ValueError:
            props[name] = value
    strategy: dict[str, Any] = {}
    if max_cpu_hour is not None:
        strategy["max_per_cpu_sec"] = _per_sec(max_cpu_hour)
    if max_hour is not None:
        strategy["max_per_duration_sec"] = _per_sec(max_hour)
    if max_start_fee is not None:
        strategy["max_start_fee"] = max_start_fee
    if deny:
        strategy["deny"] = list(deny)
    client = obj.client()
    demand = client.call("POST", "/market/demands", json={
        "properties": props, "constraints": constraints, "subnet": subnet, "expiration_s": expiration,
    })
    time.sleep(max(wait, 0.0))
    result = client.call("POST", f"/market/demands/{demand['demand_id']}/negotiate",
                         json={"count": count, "strategy": strategy}, timeout=60)
    client.call("DELETE", f"/market/demands/{demand['demand_id']}")
    result["demand_id"] = demand["demand_id"]
    lines = [f"demand {demand['demand_id'][:12]}: {len(result['agreements'])} agreement(s)"]
    for a in result["agreements"]:
        lines.append(f"  agreement {a['agreement_id'][:12]} with {a['provider_id']}  {_price_line(a['offer_properties'])}")
    for f in result["failures"]:
        lines.append(f"  skipped {f['provider_id']}: {f['code']}: {f['message']}")
    emit(result, as_json, "\n".join(lines))
    if not result["agreements"]:
        raise YagnaError("no agreement signed: no matching provider accepted (see the reasons above)")


@market.command("terminate")
@click.argument("agreement_id")
@click.option("--reason", default="requestor-done", show_default=True)
@click.pass_obj
def market_terminate(obj: Any, agreement_id: str, reason: str) -> None:
    """End an approved agreement and tell the other side."""
    a = obj.client().call("POST", f"/market/agreements/{agreement_id}/terminate", json={"reason": reason})
    click.echo(f"agreement {a['agreement_id'][:12]} {a['state']}")


# -- provider ---------------------------------------------------------------------------------
@click.group()
def provider() -> None:
    """What this node sells: presets and capacity."""


@provider.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def provider_status(obj: Any, as_json: bool) -> None:
    """Capacity, committed resources, presets and their live offers."""
    s = obj.client().call("GET", "/provider/status")

    def cap(c: dict[str, Any]) -> str:
        return f"{c['threads']} threads, {c['mem_gib']:g} GiB memory, {c['storage_gib']:g} GiB disk"

    lines = [f"capacity:  {cap(s['capacity'])}", f"committed: {cap(s['committed'])}",
             f"free:      {cap(s['free'])}", f"agreements: {s['active_agreements']} active, "
             f"{s['open_negotiations']} negotiations open", "presets:"]
    for p in s["presets"]:
        offer = p["offer_id"][:12] if p["offer_id"] else "not offered (no free capacity)"
        lines.append(f"  {p['name']:16} {p['threads']} thr {p['mem_gib']:g} GiB {p['storage_gib']:g} GiB  "
                     f"subnet {p['subnet']}  offer {offer}")
    emit(s, as_json, "\n".join(lines))


@provider.group("preset")
def preset() -> None:
    """Create, list, update and delete presets (each becomes an offer)."""


def _preset_options(f):  # type: ignore[no-untyped-def]
    for option in reversed([
        click.option("--threads", type=int, help="CPU threads per agreement."),
        click.option("--mem-gib", type=float, help="Memory per agreement, GiB."),
        click.option("--storage-gib", type=float, help="Disk per agreement, GiB."),
        click.option("--price-cpu-hour", help="Price per CPU-hour, tokens (e.g. 0.025)."),
        click.option("--price-hour", help="Price per hour of duration, tokens."),
        click.option("--start-fee", help="Price per agreement start, tokens."),
        click.option("--fixed-price-hour", help="Sell this size at a fixed price per hour, tokens (no CPU price, "
                                                "no start fee); instead of the three prices above."),
        click.option("--subnet", help="Subnet the offer is published in."),
        click.option("--runtime", type=click.Choice(["docker"]), help="Runtime (docker)."),
    ]):
        f = option(f)
    return f


def _preset_body(threads, mem_gib, storage_gib, price_cpu_hour, price_hour, start_fee, fixed_price_hour, subnet,  # type: ignore[no-untyped-def]
                 runtime) -> dict[str, Any]:
    body: dict[str, Any] = {k: v for k, v in (("threads", threads), ("mem_gib", mem_gib), ("storage_gib", storage_gib),
                                               ("subnet", subnet), ("runtime", runtime)) if v is not None}
    if fixed_price_hour is not None:
        if any(v is not None for v in (price_cpu_hour, price_hour, start_fee)):
            raise YagnaError("--fixed-price-hour replaces --price-cpu-hour, --price-hour and --start-fee; give one or the others")
        body["fixed"] = True
        body["pricing"] = {"per_cpu_sec": "0", "per_duration_sec": _per_sec(fixed_price_hour), "start_fee": "0"}
        return body
    pricing = {}
    if price_cpu_hour is not None:
        pricing["per_cpu_sec"] = _per_sec(price_cpu_hour)
    if price_hour is not None:
        pricing["per_duration_sec"] = _per_sec(price_hour)
    if start_fee is not None:
        pricing["start_fee"] = start_fee
    if pricing:
        body["pricing"] = pricing
    return body


def _preset_text(p: dict[str, Any]) -> str:
    pr = p["pricing"]
    size = f"{p['name']:16} {p['runtime']:7} {p['threads']:>3} thr {p['mem_gib']:>6g} GiB {p['storage_gib']:>6g} GiB  "
    if p.get("fixed"):
        return size + f"fixed {_per_hour(pr['per_duration_sec'])}/h  subnet {p['subnet']}"
    return size + (f"{_per_hour(pr['per_cpu_sec'])}/cpu-h {_per_hour(pr['per_duration_sec'])}/h start {pr['start_fee']}"
                   f"  subnet {p['subnet']}")


@preset.command("create")
@click.argument("name")
@_preset_options
@click.pass_obj
def preset_create(obj: Any, name: str, **opts: Any) -> None:
    """Create a preset; the node offers it at once if it fits in the free capacity."""
    from market.presets import Preset

    body = _preset_body(**opts)
    defaults = Preset(name=name).to_json()
    pricing = cast(dict[str, Any], defaults["pricing"])
    merged = {**defaults, **body, "pricing": {**pricing, **body.get("pricing", {})}}
    p = obj.client().call("POST", "/provider/presets", json=merged)
    click.echo(f"created {_preset_text(p)}")


@preset.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def preset_list(obj: Any, as_json: bool) -> None:
    """The node's presets."""
    rows = obj.client().call("GET", "/provider/presets")
    emit(rows, as_json, "\n".join(_preset_text(p) for p in rows) if rows else "no presets")


@preset.command("update")
@click.argument("name")
@_preset_options
@click.pass_obj
def preset_update(obj: Any, name: str, **opts: Any) -> None:
    """Change a preset; its old offer is withdrawn and a new one published."""
    body = _preset_body(**opts)
    if not body:
        raise YagnaError("nothing to change: give at least one option (see --help)")
    p = obj.client().call("PATCH", f"/provider/presets/{name}", json=body)
    click.echo(f"updated {_preset_text(p)}")


@preset.command("delete")
@click.argument("name")
@click.pass_obj
def preset_delete(obj: Any, name: str) -> None:
    """Delete a preset and withdraw its offer (running agreements are not affected)."""
    obj.client().call("DELETE", f"/provider/presets/{name}")
    click.echo(f"deleted preset {name}")


@provider.group("policy")
def policy() -> None:
    """The acceptance policy: whom and what terms this provider accepts."""


def _policy_text(p: dict[str, Any]) -> str:
    floor = p["price_floor"]
    floor_text = "none" if floor is None else (
        f"{_per_hour(floor['per_cpu_sec'])}/cpu-h {_per_hour(floor['per_duration_sec'])}/h start {floor['start_fee']}")
    return "\n".join([
        f"agreement expiration: {p['min_expiration_s']} s to {p['max_expiration_s']} s from now",
        f"price floor:          {floor_text}",
        f"denied requestors:    {', '.join(p['deny']) or 'none'}",
        f"allowed requestors:   {'everyone' if p['allow'] is None else (', '.join(p['allow']) or 'nobody')}",
        f"debit-note interval:  {p['debit_note_interval_s'][0]}-{p['debit_note_interval_s'][1]} s "
        f"(default {p['default_debit_note_interval_s']} s)",
        f"payment timeout:      {p['payment_timeout_s'][0]}-{p['payment_timeout_s'][1]} s "
        f"(default {p['default_payment_timeout_s']} s)",
    ])


@policy.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def policy_show(obj: Any, as_json: bool) -> None:
    """The current acceptance policy."""
    p = obj.client().call("GET", "/provider/policy")
    emit(p, as_json, _policy_text(p))


def _range(text: str | None, name: str) -> list[int] | None:
    if text is None:
        return None
    low, sep, high = text.partition(":")
    try:
        return [int(low), int(high)] if sep else [int(low), int(low)]
    except ValueError:
        raise YagnaError(f"{name} {text!r}: expected MIN:MAX in seconds, e.g. 30:600") from None


@policy.command("set")
@click.option("--deny", multiple=True, metavar="NODE_ID", help="Refuse this requestor (repeatable).")
@click.option("--undeny", multiple=True, metavar="NODE_ID", help="Remove from the deny list (repeatable).")
@click.option("--allow", multiple=True, metavar="NODE_ID", help="Accept only listed requestors; adds one (repeatable).")
@click.option("--allow-everyone", is_flag=True, help="Drop the allow list: accept any requestor not denied.")
@click.option("--min-expiration", type=int, help="Shortest agreement accepted, seconds from now.")
@click.option("--max-expiration", type=int, help="Longest agreement accepted, seconds from now.")
@click.option("--price-floor-cpu-hour", help="Refuse to sell below this per CPU-hour (tokens).")
@click.option("--price-floor-hour", help="Refuse to sell below this per hour of duration (tokens).")
@click.option("--price-floor-start-fee", help="Refuse to sell below this start fee (tokens).")
@click.option("--no-price-floor", is_flag=True, help="Remove the price floor.")
@click.option("--debit-note-interval", metavar="MIN:MAX", help="Accepted debit-note intervals, seconds.")
@click.option("--payment-timeout", metavar="MIN:MAX", help="Accepted payment timeouts, seconds.")
@click.pass_obj
def policy_set(obj: Any, deny: tuple[str, ...], undeny: tuple[str, ...], allow: tuple[str, ...], allow_everyone: bool,
               min_expiration: int | None, max_expiration: int | None, price_floor_cpu_hour: str | None,
               price_floor_hour: str | None, price_floor_start_fee: str | None, no_price_floor: bool,
               debit_note_interval: str | None, payment_timeout: str | None) -> None:
    """Change the acceptance policy; it applies to the next proposal and survives restarts."""
    client = obj.client()
    current = client.call("GET", "/provider/policy")
    change: dict[str, Any] = {}
    if deny or undeny:
        change["deny"] = sorted((set(current["deny"]) | set(deny)) - set(undeny))
    if allow_everyone:
        change["allow"] = None
    elif allow:
        change["allow"] = sorted(set(current["allow"] or []) | set(allow))
    if min_expiration is not None:
        change["min_expiration_s"] = min_expiration
    if max_expiration is not None:
        change["max_expiration_s"] = max_expiration
    if no_price_floor:
        change["price_floor"] = None
    elif any(v is not None for v in (price_floor_cpu_hour, price_floor_hour, price_floor_start_fee)):
        floor = current["price_floor"] or {"start_fee": "0", "per_cpu_sec": "0", "per_duration_sec": "0"}
        if price_floor_cpu_hour is not None:
            floor["per_cpu_sec"] = _per_sec(price_floor_cpu_hour)
        if price_floor_hour is not None:
            floor["per_duration_sec"] = _per_sec(price_floor_hour)
        if price_floor_start_fee is not None:
            floor["start_fee"] = price_floor_start_fee
        change["price_floor"] = floor
    for key, value in (("debit_note_interval_s", _range(debit_note_interval, "--debit-note-interval")),
                       ("payment_timeout_s", _range(payment_timeout, "--payment-timeout"))):
        if value is not None:
            change[key] = value
    if not change:
        raise YagnaError("nothing to change: give at least one option (see --help)")
    click.echo(_policy_text(client.call("PATCH", "/provider/policy", json=change)))


@click.command("reputation")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def reputation(obj: Any, as_json: bool) -> None:
    """This node's own record of every provider it used (successes, failures, disagreements, timeouts, latency)."""
    rows = obj.client().call("GET", "/reputation")
    lines = [f"{'PROVIDER':54} {'SCORE':>6} {'OK':>5} {'FAIL':>5} {'WRONG':>5} {'TIMEOUT':>7} {'REFUSED':>7} {'LATENCY':>9}"]
    for r in rows:
        latency = f"{r['latency_ms']:.0f} ms" if r.get("latency_ms") is not None else "-"
        lines.append(f"{r['provider_id']:54} {r['reputation']:>6.2f} {r['successes']:>5} {r['failures']:>5} "
                     f"{r['disagreements']:>5} {r['timeouts']:>7} {r['rejections']:>7} {latency:>9}")
    emit(rows, as_json, "\n".join(lines) if rows else "no providers used yet")
