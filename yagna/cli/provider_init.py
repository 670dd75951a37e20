"""``yagna provider init`` (from a spare machine to a configured provider) and ``yagna provider doctor``.

``init`` asks (or, with ``--yes``, takes from flags) what to sell, at what
price, in which subnet and how to be paid; it shows what the machine has and
caps at it, offers a price hint from the offers a running node sees, checks
that Docker runs the hardened container (``doctor``'s checks), writes the
answers to the config file (``[node]``, ``[market]``, ``[provider]``,
``[provider.preset]``, ``[payment]``; the daemon creates or updates the preset
at start) and prints the next command. Nothing is written when a check fails.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from yagna.cli.output import emit
from yagna.core.errors import YagnaError

CPU_SEC = "golem.usage.cpu_sec"
DURATION_SEC = "golem.usage.duration_sec"


def _extra_labels() -> dict[str, str] | None:
    session = os.environ.get("YAGNA_TEST_SESSION")  # as the daemon labels its containers (yagna/node.py)
    return {"network.yagna.test-session": session} if session else None


def docker_checks() -> list[tuple[str, str]]:
    """The exe-unit's checks (exeunit/docker/selfcheck.py); DockerCheckFailed names the fix."""
    from exeunit.docker.selfcheck import run_all

    return run_all(extra_labels=_extra_labels())


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def provider_doctor(as_json: bool) -> None:
    """Check that Docker works and that the hardened container starts (it is removed again)."""
    from exeunit.docker.selfcheck import DockerCheckFailed

    try:
        done = docker_checks()
    except DockerCheckFailed as exc:
        if as_json:
            emit({"ok": False, "problem": exc.problem, "fix": exc.fix}, True)
            raise SystemExit(1) from None
        raise YagnaError(f"{exc.problem}\n  fix: {exc.fix}") from None
    emit({"ok": True, "checks": dict(done)}, as_json, "\n".join(f"ok  {n}: {s}" for n, s in done))


# -- price hint ----------------------------------------------------------------------------------------


def price_hint(offers: list[dict[str, Any]], *, me: str | None = None, subnet: str | None = None) -> dict[str, Any] | None:
    """Median hourly prices (tokens) of the offers seen, ours left out; None when there are none."""
    import statistics

    from yagna.core.money import format_amount

    cpu, hour, start = [], [], []
    for o in offers:
        if o.get("provider_id") == me or (subnet is not None and o.get("subnet") != subnet):
            continue
        props = o.get("properties") or {}
        coeffs, vector = props.get("golem.com.pricing.model.linear.coeffs"), props.get("golem.com.usage.vector")
        if not (isinstance(coeffs, list) and isinstance(vector, list) and len(coeffs) == len(vector) + 1):
            continue
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in coeffs):
            continue
        by = dict(zip(vector, coeffs, strict=False))
        cpu.append(int(by.get(CPU_SEC, 0)) * 3600)
        hour.append(int(by.get(DURATION_SEC, 0)) * 3600)
        start.append(int(coeffs[-1]))
    if not cpu:
        return None

    def median(xs: list[int]) -> str:
        return format_amount(int(statistics.median_low(xs)))

    return {"offers": len(cpu), "price_cpu_hour": median(cpu), "price_hour": median(hour), "start_fee": median(start),
            "lowest_cpu_hour": format_amount(min(cpu)), "highest_cpu_hour": format_amount(max(cpu))}


def _network_hint(data_dir: Path, subnet: str) -> tuple[dict[str, Any] | None, str]:
    """The hint and a line for people; without a running node there is none."""
    from requestor_sdk.errors import DaemonNotFound
    from yagna.cli.client import ApiError, NodeClient
    from requestor_sdk.locate import locate_in
    from yagna.core.paths import DataDir

    try:
        location = locate_in(DataDir(data_dir))
        offers = NodeClient(location, timeout=5).call("GET", "/market/offers", params={"subnet": subnet})
    except (DaemonNotFound, ApiError):
        return None, "price hint: no node is running, so no hint is available (it reads the offers a running node sees)"
    hint = price_hint(offers, me=location.node_id, subnet=subnet)
    if hint is None:
        return None, f"price hint: the node sees no other offers in subnet {subnet} yet"
    return hint, (f"price hint: {hint['offers']} offer(s) in subnet {subnet}: median {hint['price_cpu_hour']}/cpu-h "
                  f"(from {hint['lowest_cpu_hour']} to {hint['highest_cpu_hour']}), {hint['price_hour']}/h, "
                  f"start fee {hint['start_fee']}")


# -- init ----------------------------------------------------------------------------------------------


def _ask(value: Any, interactive: bool, text: str, default: Any, kind: Any) -> Any:
    """A flag's value, else the answer to a prompt (checked by the setting's kind), else ``default``."""
    if value is not None:
        return value
    if not interactive:
        return default

    def proc(answer: str) -> Any:
        try:
            return kind.parse(str(answer))
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None

    shown = "" if default is None else kind.show(default)
    return click.prompt(text, default=shown or None, value_proc=proc)


def _check(key: str, value: Any) -> Any:
    from yagna import settings

    try:
        return settings.BY_KEY[key].kind.check(value)
    except ValueError as exc:
        raise YagnaError(f"{key} {exc}") from None


@click.command("init")
@click.option("--yes", "-y", is_flag=True, help="Ask nothing: take the flags, and defaults for the rest.")
@click.option("--max-threads", type=click.IntRange(min=0), help="Most CPU threads to sell (as service run's).")
@click.option("--max-mem-gib", type=click.FloatRange(min=0), help="Most memory to sell, GiB (as service run's).")
@click.option("--max-storage-gib", type=click.FloatRange(min=0), help="Most disk to sell, GiB (as service run's).")
@click.option("--threads", type=click.IntRange(1, 1024), help="CPU threads per agreement (the preset's size).")
@click.option("--mem-gib", type=click.FloatRange(min=0, min_open=True), help="Memory per agreement, GiB.")
@click.option("--storage-gib", type=click.FloatRange(min=0, min_open=True), help="Disk per agreement, GiB.")
@click.option("--price-cpu-hour", help="Price per CPU-hour, tokens (e.g. 0.025).")
@click.option("--price-hour", help="Price per hour of duration, tokens.")
@click.option("--start-fee", help="Price per agreement start, tokens.")
@click.option("--fixed-price-hour", help="Sell this size at a fixed price per hour, tokens, instead of the three above.")
@click.option("--subnet", help="Subnet to sell in [default public].")
@click.option("--preset-name", default=None, help="Name of the preset [default: default].")
@click.option("--role", type=click.Choice(["provider", "both"]), default=None,
              help="provider, or both (this node also buys) [default provider].")
@click.option("--payment-driver", type=click.Choice(["testnet-ledger", "erc20"]),
              help="How to be paid: testnet-ledger (test tokens) or erc20 (a chain; needs the three below).")
@click.option("--rpc-url", metavar="URL", help="erc20: the chain's JSON-RPC endpoint.")
@click.option("--token", metavar="ADDRESS", help="erc20: the ERC-20 token's 0x address.")
@click.option("--contract", metavar="ADDRESS", help="erc20: the PaymentChannels contract's 0x address.")
@click.option("--no-docker-check", is_flag=True, help="Write the config without checking Docker.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), envvar="YAGNA_CONFIG",
              help="The config file to write [default <data dir>/config.toml].")
@click.pass_obj
def provider_init(obj: Any, yes: bool, max_threads: int | None, max_mem_gib: float | None,
                  max_storage_gib: float | None, threads: int | None, mem_gib: float | None,
                  storage_gib: float | None, price_cpu_hour: str | None, price_hour: str | None,
                  start_fee: str | None, fixed_price_hour: str | None, subnet: str | None, preset_name: str | None,
                  role: str | None, payment_driver: str | None, rpc_url: str | None, token: str | None,
                  contract: str | None, no_docker_check: bool, config_path: Path | None) -> None:
    """Set this machine up as a provider: what to sell, prices, subnet, payment; Docker checked; config written."""
    from market.capacity import Capacity, default_limits, machine_capacity
    from yagna import settings, settings_edit
    from yagna.core.paths import client_data_dir

    interactive = not yes
    data_dir = Path(obj.data_dir) if obj.data_dir is not None else client_data_dir()
    path, _ = settings.config_path(data_dir, config_path)
    current = settings.load(data_dir, explicit=path if path.exists() else None)
    if fixed_price_hour is not None and any(v is not None for v in (price_cpu_hour, price_hour, start_fee)):
        raise YagnaError("--fixed-price-hour replaces --price-cpu-hour, --price-hour and --start-fee; "
                         "give one or the others")

    # 1. Docker, before any question: without it nothing can be sold.
    if not no_docker_check:
        from exeunit.docker.selfcheck import DockerCheckFailed

        try:
            for name, seen in docker_checks():
                click.echo(f"ok  {name}: {seen}")
        except DockerCheckFailed as exc:
            raise YagnaError(f"{exc.problem}\n  fix: {exc.fix}\nnothing was written; run `yagna provider init` "
                             "again once it is fixed (or pass --no-docker-check)") from None

    # 2. What to sell, within what the machine has.
    machine = machine_capacity(data_dir)
    share = default_limits(machine)
    click.echo(f"this machine: {machine.threads} threads, {machine.mem_gib:g} GiB memory, "
               f"{machine.storage_gib:g} GiB free disk under {data_dir}")
    B = settings.BY_KEY

    def from_file(key: str, fallback: Any) -> Any:
        return current[key] if current.origins[key] != "default" else fallback

    sell_threads = _ask(max_threads, interactive, "CPU threads to sell", from_file("provider.max_threads", share.threads),
                        B["provider.max_threads"].kind)
    sell_mem = _ask(max_mem_gib, interactive, "memory to sell, GiB", from_file("provider.max_mem_gib", share.mem_gib),
                    B["provider.max_mem_gib"].kind)
    sell_disk = _ask(max_storage_gib, interactive, "disk to sell, GiB",
                     from_file("provider.max_storage_gib", share.storage_gib), B["provider.max_storage_gib"].kind)
    asked = Capacity(int(sell_threads), float(sell_mem), float(sell_disk))
    sold = machine.min(asked)
    for what, want, have in (("threads", asked.threads, sold.threads), ("memory GiB", asked.mem_gib, sold.mem_gib),
                             ("disk GiB", asked.storage_gib, sold.storage_gib)):
        if want != have:
            click.echo(f"capped at what this machine has: {have:g} {what} (asked for {want:g})")

    # 3. Where and at what price.
    sub = _ask(subnet, interactive, "subnet", from_file("market.subnets", ["public"])[0],
               B["provider.preset.subnet"].kind)
    click.echo(_network_hint(data_dir, sub)[1])
    fixed_key = "provider.preset.fixed_price_hour"
    keep_fixed = (not interactive and current[fixed_key] is not None
                  and all(v is None for v in (price_cpu_hour, price_hour, start_fee)))
    if fixed_price_hour is not None or keep_fixed:
        prices: dict[str, object | None] = {
            fixed_key: fixed_price_hour or current[fixed_key], "provider.preset.price_cpu_hour": None,
            "provider.preset.price_hour": None, "provider.preset.start_fee": None}
    else:
        prices = {fixed_key: None}
        for key, value, text in (("provider.preset.price_cpu_hour", price_cpu_hour, "price per CPU-hour, tokens"),
                                 ("provider.preset.price_hour", price_hour, "price per hour, tokens"),
                                 ("provider.preset.start_fee", start_fee, "start fee per agreement, tokens")):
            prices[key] = _ask(value, interactive, text, current[key], B[key].kind)

    # 4. The size of one agreement, within what is sold.
    size = Capacity(threads or from_file("provider.preset.threads", 1),
                    mem_gib or from_file("provider.preset.mem_gib", 1.0),
                    storage_gib or from_file("provider.preset.storage_gib", 2.0)).min(sold)
    if min(size.threads, size.mem_mib, size.storage_mib) <= 0:
        raise YagnaError(f"nothing to sell: the capacity sold ({sold.threads} threads, {sold.mem_gib:g} GiB memory, "
                         f"{sold.storage_gib:g} GiB disk) leaves no room for one agreement")

    # 5. How to be paid.
    driver = _ask(payment_driver, interactive, "payment driver (testnet-ledger: test tokens; erc20: a chain)",
                  current["payment.driver"], B["payment.driver"].kind)
    payment: dict[str, object | None] = {"payment.driver": driver}
    if driver == "erc20":
        for key, flag, value in (("payment.rpc_url", "--rpc-url", rpc_url), ("payment.token", "--token", token),
                                 ("payment.contract", "--contract", contract)):
            got = _ask(value, interactive, f"{flag[2:]} ({B[key].kind.doc})", current[key], B[key].kind)
            if got is None:
                raise YagnaError(f"the erc20 payment driver needs {flag} (docs/payments.md)")
            payment[key] = got

    changes: dict[str, object | None] = {
        "node.role": role or (current["node.role"] if current["node.role"] in ("provider", "both")
                              and current.origins["node.role"] != "default" else "provider"),
        "market.subnets": [sub, *(s for s in from_file("market.subnets", []) if s != sub)],  # the preset's first
        "provider.max_threads": sold.threads,
        "provider.max_mem_gib": sold.mem_gib,
        "provider.max_storage_gib": sold.storage_gib,
        "provider.preset.name": preset_name or current["provider.preset.name"],
        "provider.preset.threads": size.threads,
        "provider.preset.mem_gib": size.mem_gib,
        "provider.preset.storage_gib": size.storage_gib,
        "provider.preset.subnet": None,  # it follows market.subnets' first: the subnet just chosen
        **prices,
        **payment,
    }
    changes = {k: (_check(k, changes[k]) if changes[k] is not None else None) for k in B if k in changes}
    settings_edit.write(path, changes)
    click.echo(f"wrote {path}:")
    for key, written in changes.items():
        if written is not None:
            click.echo(f"  {key} = {B[key].kind.show(written)}")
    if driver == "testnet-ledger":
        click.echo("payments: test tokens of no value (testnet-ledger); `yagna payment status` shows them")
    else:
        click.echo("payments: the node's chain address is made at its first start; `yagna payment status` shows it")
    click.echo("next: " + next_command(data_dir))


def next_command(data_dir: Path) -> str:
    """What to run after init: the installed service, or the daemon in the foreground."""
    from yagna.cli.service_install import UNIT_PATH
    from yagna.core.paths import SYSTEM_DATA_DIR, default_data_dir

    if data_dir == SYSTEM_DATA_DIR and UNIT_PATH.exists():
        return "sudo systemctl enable --now yagna   (then: sudo systemctl restart yagna after each change)"
    flag = "" if data_dir == default_data_dir() else f" --data-dir {data_dir}"
    return f"yagna service run{flag}   (unattended, as a system service: sudo yagna service install)"
