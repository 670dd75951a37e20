"""Node configuration: built from CLI flags and environment, never at import time."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from yagna.core.errors import YagnaError
from yagna.core.paths import DataDir, default_data_dir, user_data_root  # noqa: F401  (re-exported)

if TYPE_CHECKING:
    from market.presets import Preset
    from yagna.net.relay_core import RelayLimits

DEFAULT_API_PORT = 7465  # Golem's convention, so existing tools find us
ROLES = ("requestor", "provider", "both")


class ConfigError(YagnaError):
    """The node cannot start with this configuration (the message says why)."""


PAYMENT_DRIVERS = ("testnet-ledger", "erc20")
HEX = frozenset("0123456789abcdefABCDEF")


@dataclass
class NodeConfig:
    data_dir: Path
    role: str = "both"
    api_host: str = "127.0.0.1"
    api_port: int = DEFAULT_API_PORT
    metrics_listen: str | None = None
    """``HOST:PORT`` of a listener serving ``/metrics`` without an app key, for a remote Prometheus; None: off."""
    listen: list[str] = field(default_factory=list)
    """Empty: 127.0.0.1 on the port used last time if free, else an OS-chosen one."""
    bootstrap: list[str] = field(default_factory=list)
    px_interval: float = 5.0
    target_peers: int = 8
    """Connections the node keeps up by its own dials (a partial mesh; bootstrap peers always)."""
    max_peers: int = 64
    """Connections at most, inbound included; the newest idle ones beyond it are closed."""
    network_id: str = "testnet"
    """Offers, demands and agreements name it; nodes of different networks ignore each other."""
    subnets: list[str] = field(default_factory=lambda: ["public"])
    offer_ttl_s: int = 30 * 60
    anti_entropy_s: float = 3.0
    """Mean seconds between offer anti-entropy rounds (jittered +-50%; 0: only with each new peer)."""
    max_threads: int | None = None
    max_mem_gib: float | None = None
    max_storage_gib: float | None = None
    """What a provider sells at most; None: Golem's defaults (all threads but one, 70% RAM, 80% disk).
    Never more than the machine has."""
    test_faults: frozenset[str] = frozenset()
    """Test-only fault injection (``--test-fault NAME``): ``withhold-payments``, ``wrong-results``,
    ``drop-offer-gossip`` (the market ignores all offer gossip from peers, as if every copy were lost),
    ``kill-after-redeem-sent`` (erc20: the process SIGKILLs itself right after a redeem/close transaction
    went out, before its receipt: the crash the driver's journal recovers from)."""
    activity_keepalive_s: float = 30.0
    """Provider: an activity whose requestor is silent this long is terminated (its container removed)."""
    job_cache_gib: float = 4.0
    """Provider: pipelines' caches kept for all requestors together, GiB (least recently used go first)."""
    job_cache_per_requestor_gib: float = 1.0
    """Provider: pipelines' caches kept for one requestor, GiB."""
    relay_service: str = "auto"
    """Serve circuit relay v2: ``auto`` while publicly reachable, ``on`` always, ``off`` never."""
    relay_limits: RelayLimits | None = None
    """What relaying may cost this node; None: the defaults (yagna/net/relay_core.py, docs/behind-nat.md)."""
    hole_punching: bool = True
    """Upgrade relayed connections to direct ones by DCUtR (yagna/net/holepunch.py)."""
    payment_driver: str = "testnet-ledger"
    """``testnet-ledger`` (tokens of no value, in the node's own file) or ``erc20`` (an EVM chain)."""
    rpc_url: str | None = None
    """erc20: the chain's JSON-RPC endpoint."""
    token: str | None = None
    """erc20: the ERC-20 token's address."""
    contract: str | None = None
    """erc20: the PaymentChannels contract's address."""
    provider_preset: Preset | None = None
    """Provider: the preset of ``[provider.preset]`` in the config file, created or updated at start."""

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ConfigError(f"role must be one of {', '.join(ROLES)}, not {self.role!r}")
        if not 0 <= self.api_port <= 65535:
            raise ConfigError(f"API port {self.api_port} is out of range 0-65535")
        if self.metrics_listen is not None:
            from yagna.metrics.address import parse_listen

            try:
                parse_listen(self.metrics_listen)
            except ValueError as exc:
                raise ConfigError(f"--metrics-listen {exc}") from None
        if self.payment_driver not in PAYMENT_DRIVERS:
            raise ConfigError(f"payment driver must be one of {', '.join(PAYMENT_DRIVERS)}, not {self.payment_driver!r}")
        if self.payment_driver == "erc20":
            missing = [f"--{n.replace('_', '-')}" for n in ("rpc_url", "token", "contract") if not getattr(self, n)]
            if missing:
                raise ConfigError(f"the erc20 payment driver needs {', '.join(missing)} (the chain's RPC URL, the "
                                  "token's and the PaymentChannels contract's addresses; `yagna devnet up` sets them "
                                  "on a local chain)")
            for name in ("token", "contract"):
                value = str(getattr(self, name))
                if not (value.startswith("0x") and len(value) == 42 and all(c in HEX for c in value[2:])):
                    raise ConfigError(f"--{name} must be a 0x address of 40 hex digits, not {value!r}")
            if not str(self.rpc_url).startswith(("http://", "https://")):
                raise ConfigError(f"--rpc-url must be an http(s) URL, not {self.rpc_url!r}")
        if self.relay_service not in ("auto", "on", "off"):
            raise ConfigError(f"relay service must be auto, on or off, not {self.relay_service!r}")
        if not 1 <= self.target_peers <= self.max_peers:
            raise ConfigError(
                f"target peers ({self.target_peers}) must be from 1 to max peers ({self.max_peers})"
            )
        if self.api_host not in ("127.0.0.1", "localhost", "::1"):
            raise ConfigError(
                f"the API must listen on the loopback interface, not {self.api_host!r}: "
                "it controls the node and its money"
            )
