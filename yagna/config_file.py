"""The node's config file under its older name, ``<data dir>/yagna.toml``: a view for older callers.

The config file is now ``<data dir>/config.toml`` and every setting is in the table of
:mod:`yagna.settings`, which reads and checks both names (this module's :func:`load` is
that check, seen through the older dataclasses below). ``yagna.toml`` has the same
sections and keys; what it held before:

Only settings an operator keeps across restarts live here; flags given on the
command line win over the file, and list settings (``bootstrap``) add to it::

    [net]
    listen = ["/ip4/0.0.0.0/tcp/7464"]
    bootstrap = ["/ip4/198.18.0.10/tcp/7464/p2p/12D3KooW..."]
    target_peers = 8      # connections a node keeps up by its own dials
    max_peers = 64        # connections at most, inbound included
    relay_service = "auto"  # serve circuit relay v2 while public: auto, on (always), off
    relay_max_reservations = 128
    relay_circuit_mib = 256       # bytes per relayed circuit, MiB
    relay_circuit_seconds = 600   # lifetime of a relayed circuit
    relay_circuits_per_peer = 4
    relay_max_circuits = 32
    hole_punching = true  # upgrade relayed connections to direct ones (DCUtR)

    [market]
    anti_entropy_interval = 3.0   # mean seconds between offer anti-entropy rounds (0: only with new peers)

    [payment]
    driver = "erc20"              # or "testnet-ledger" (the default)
    rpc_url = "http://127.0.0.1:8545"
    token = "0x..."               # the ERC-20 token
    contract = "0x..."            # the PaymentChannels contract (docs/payments.md)

Unknown sections or keys are errors that name them and their line: a misspelt key
silently ignored would leave a node running with a setting its operator did not choose.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yagna import settings

if TYPE_CHECKING:
    from yagna.net.relay_core import RelayLimits

FILE_NAME = settings.LEGACY_FILE_NAME
MAX_FILE_SIZE = settings.MAX_FILE_SIZE
MAX_ANTI_ENTROPY_INTERVAL = 3600.0


@dataclass(frozen=True)
class NetFileSettings:
    listen: list[str] = field(default_factory=list)
    bootstrap: list[str] = field(default_factory=list)
    target_peers: int | None = None
    max_peers: int | None = None
    relay_service: str | None = None
    relay_max_reservations: int | None = None
    relay_circuit_mib: int | None = None
    relay_circuit_seconds: int | None = None
    relay_circuits_per_peer: int | None = None
    relay_max_circuits: int | None = None
    hole_punching: bool | None = None


@dataclass(frozen=True)
class MarketFileSettings:
    anti_entropy_interval: float | None = None


@dataclass(frozen=True)
class PaymentFileSettings:
    driver: str | None = None
    rpc_url: str | None = None
    token: str | None = None
    contract: str | None = None


@dataclass(frozen=True)
class FileSettings:
    path: Path | None = None
    """The file these came from; None when there is none."""
    net: NetFileSettings = field(default_factory=NetFileSettings)
    market: MarketFileSettings = field(default_factory=MarketFileSettings)
    payment: PaymentFileSettings = field(default_factory=PaymentFileSettings)


def default_path(data_dir: Path) -> Path:
    return data_dir / FILE_NAME


def load(path: Path, *, required: bool) -> FileSettings:
    """Read and check the file (:func:`yagna.settings.read_file`); a missing optional file gives the defaults."""
    got = settings.read_file(path, required=required)
    v = got.values

    def section(name: str) -> dict[str, Any]:
        return {k.rpartition(".")[2]: value for k, value in v.items() if k.rpartition(".")[0] == name}

    net = section("net")
    return FileSettings(
        path=got.path,
        net=NetFileSettings(**{k: net[k] for k in NetFileSettings.__dataclass_fields__ if k in net}),
        market=MarketFileSettings(anti_entropy_interval=v.get("market.anti_entropy_interval")),  # type: ignore[arg-type]
        payment=PaymentFileSettings(**section("payment")),
    )


def relay_limits(net: NetFileSettings) -> RelayLimits | None:
    """The relay limits the file sets (defaults for the rest); None when it sets none."""
    return settings.relay_limits({f"net.{k}": getattr(net, k) for k in NetFileSettings.__dataclass_fields__})
