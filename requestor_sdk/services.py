"""Long-running services from a manifest (``yagna deploy``), for trio scripts.

::

    from requestor_sdk import Services

    async with Services() as services:                       # the local daemon, found like Requestor's
        dep = await services.deploy("app.yaml", ports={("web", 8080): 18080})
        await dep.wait_healthy(timeout=60)                    # every replica running (and healthy)
        print(dep.endpoint("web", 8080))                      # http://127.0.0.1:18080
        async for line in dep.logs(follow=True):              # until the deployment closes
            print(f"[{line.source}] {line.text}")

The daemon does the work (leases a provider per replica, forwards each exposed port to a local
port, restarts and fails replicas over, pays by the interval: ``docs/services.md``); this module is
a thin client of its REST routes (``/api/v1/deployments``) with typed views
(:class:`DeploymentStatus`, :class:`ReplicaStatus`, :class:`LogLine`) and typed errors. It starts
no background task: every call is the caller's.

Lifecycle: every deployment made by :meth:`Services.deploy` is closed when the ``async with``
block ends (normally, on an error, on cancellation or ``Ctrl-C``): shielded from cancellation and
bounded by ``close_timeout_s``. ``deploy(..., keep=True)`` leaves it running (close it later with
``yagna deploy close ID``, or :meth:`Services.attach` it again).

Errors (all :class:`~requestor_sdk.errors.SdkError`)::

    DeployFailed(ApiError)   the deployment could not start: its manifest (``line``, ``key``), a port
                             mapping, a local port in use (``code``: bad-manifest, bad-port, port-in-use, ...)
    NotHealthy               wait_healthy timed out; names each replica not ready and why
    DeploymentEnded          the deployment closed (or failed) while being waited for
    NoSuchEndpoint           endpoint(): no such service, exposed port or replica (also a LookupError)
    ApiError, DaemonUnreachable   any other refusal of the daemon, or no answer
"""

from __future__ import annotations

import logging
import os
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import trio

from requestor_sdk.budget import tokens
from requestor_sdk.client import Api
from requestor_sdk.errors import ApiError, DaemonUnreachable, SdkError
from requestor_sdk.locate import DaemonLocation, locate

__all__ = [
    "DeployFailed", "Deployment", "DeploymentEnded", "DeploymentStatus", "LogLine", "LogStream", "NoSuchEndpoint",
    "NotHealthy", "PortMap", "ReplicaStatus", "Services",
]

log = logging.getLogger("requestor_sdk.services")

ENDED = frozenset({"closed", "failed"})
"""Deployment states after which nothing runs any more."""
FOLLOW_WAIT_S = 30.0
"""How long one follow request of :meth:`Deployment.logs` waits on the daemon for a new line."""
CREATE_TIMEOUT_S = 65.0
"""At most this long for the daemon to answer a deployment (it answers at once: replicas are placed after)."""
_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


# -- errors ---------------------------------------------------------------------------------------
class DeployFailed(ApiError):
    """A deployment could not be started.

    ``code`` says why (``bad-manifest``, ``bad-port``, ``port-in-use``, ``too-many-deployments``,
    ``bad-payment-interval``, ...); ``status`` is the daemon's HTTP status (0: refused before asking
    it). A manifest refused by the local check has its ``line`` and ``key``.
    """

    def __init__(self, message: str, *, status: int = 0, code: str | None = None, line: int | None = None,
                 key: str | None = None) -> None:
        super().__init__(message, status=status, code=code)
        self.line, self.key = line, key


class NotHealthy(SdkError):
    """:meth:`Deployment.wait_healthy` timed out: ``status`` is the last status seen, ``waiting`` the
    replicas that were not ready (the message names each one, its state and why)."""

    def __init__(self, message: str, *, status: DeploymentStatus, waiting: tuple[ReplicaStatus, ...]) -> None:
        super().__init__(message)
        self.status, self.waiting = status, waiting


class DeploymentEnded(SdkError):
    """The deployment closed (or failed) while it was waited for; ``status`` is its last status."""

    def __init__(self, message: str, *, status: DeploymentStatus) -> None:
        super().__init__(message)
        self.status = status


class NoSuchEndpoint(SdkError, LookupError):
    """:meth:`Deployment.endpoint`: the deployment has no such service, exposed port or replica."""


# -- views ----------------------------------------------------------------------------------------
class PortMap(NamedTuple):
    """An exposed port of a replica: the container's port and the requestor's ``127.0.0.1`` port for it."""

    container_port: int
    local_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.local_port}"


@dataclass(frozen=True)
class ReplicaStatus:
    """One replica of a service, as the daemon reports it.

    ``state``: pending, negotiating, deploying, running, failing-over, closed; ``reason`` says why
    it is not running (the last placement failure, the loss of its provider, ...). ``healthy`` is
    None until the provider's health check ran (a replica that exposes ports is checked on its
    first port) and for a replica without a check. ``cost`` and ``paid`` are decimal token strings
    over every agreement the replica ran under: asked by its providers, and signed to them.
    """

    service: str
    replica: int
    state: str
    reason: str | None = None
    provider_id: str | None = None
    agreement_id: str | None = None
    activity_id: str | None = None
    restarts: int = 0
    healthy: bool | None = None
    failovers: int = 0
    running_since: float | None = None
    ports: tuple[PortMap, ...] = ()
    cost: str = "0"
    paid: str = "0"
    cost_units: int = 0
    paid_units: int = 0

    @property
    def name(self) -> str:
        """``web-0``: how the daemon's log names the replica."""
        return f"{self.service}-{self.replica}"

    @property
    def ready(self) -> bool:
        """Running and, when its health is checked (it exposes ports), healthy."""
        if self.state != "running":
            return False
        return self.healthy is True if self.ports else self.healthy is not False

    def why_not_ready(self) -> str:
        """A short phrase for messages (``pending (no provider took the lease)``); empty when ready."""
        if self.ready:
            return ""
        if self.state == "running":
            return "running, but its health check fails" if self.healthy is False else \
                "running, its health not checked yet"
        return self.state + (f" ({self.reason})" if self.reason else "")

    @classmethod
    def from_view(cls, v: Mapping[str, Any]) -> ReplicaStatus:
        healthy = v.get("healthy")
        return cls(
            service=str(v["service"]), replica=int(v["replica"]), state=str(v["state"]), reason=_opt(v.get("reason")),
            provider_id=_opt(v.get("provider_id")), agreement_id=_opt(v.get("agreement_id")),
            activity_id=_opt(v.get("activity_id")), restarts=int(v.get("restarts") or 0),
            healthy=healthy if isinstance(healthy, bool) else None, failovers=int(v.get("failovers") or 0),
            running_since=float(v["running_since"]) if v.get("running_since") is not None else None,
            ports=tuple(PortMap(int(p["container_port"]), int(p["local_port"])) for p in v.get("ports") or ()),
            cost=str(v.get("cost") or "0"), paid=str(v.get("paid") or "0"),
            cost_units=int(v.get("cost_units") or 0), paid_units=int(v.get("paid_units") or 0),
        )


@dataclass(frozen=True)
class DeploymentStatus:
    """A deployment, as the daemon reports it: ``state`` is active, closing, closed or failed."""

    deployment_id: str
    state: str
    replicas: tuple[ReplicaStatus, ...]
    source: str = "manifest"
    reason: str | None = None
    created_at: float = 0.0
    closed_at: float | None = None
    notes: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        return self.state == "active"

    @property
    def ended(self) -> bool:
        """Closed or failed: nothing of it runs any more."""
        return self.state in ENDED

    @property
    def ready(self) -> bool:
        """Active, and every replica :attr:`ReplicaStatus.ready`."""
        return self.active and bool(self.replicas) and all(r.ready for r in self.replicas)

    @property
    def cost(self) -> str:
        """What its providers asked, in all (decimal tokens)."""
        return tokens(sum(r.cost_units for r in self.replicas))

    @property
    def paid(self) -> str:
        """What was signed to its providers, in all (decimal tokens)."""
        return tokens(sum(r.paid_units for r in self.replicas))

    def replicas_of(self, service: str) -> tuple[ReplicaStatus, ...]:
        return tuple(r for r in self.replicas if r.service == service)

    @classmethod
    def from_view(cls, v: Any) -> DeploymentStatus:
        """The daemon's JSON view; :class:`ApiError` (``bad-reply``) when it is not one."""
        try:
            return cls(
                deployment_id=str(v["deployment_id"]), state=str(v["state"]),
                replicas=tuple(ReplicaStatus.from_view(r) for r in v["replicas"]),
                source=str(v.get("source") or "manifest"), reason=_opt(v.get("reason")),
                created_at=float(v.get("created_at") or 0.0),
                closed_at=float(v["closed_at"]) if v.get("closed_at") is not None else None,
                notes=tuple(str(n) for n in v.get("notes") or ()),
            )
        except (KeyError, TypeError, ValueError, ArithmeticError, AttributeError) as exc:
            raise ApiError(f"unexpected deployment view from the daemon ({exc!r:.200})", code="bad-reply") from None


@dataclass(frozen=True)
class LogLine:
    """A line of a deployment's log: a replica's output or what the requestor's daemon did.

    ``source`` is the replica (``web-0``) or ``deployment``; ``stream`` is ``stdout``, ``stderr``, or
    ``yagna`` (the daemon's own news: placed, serving, lost, closing). ``seq`` numbers lines from 1.
    """

    seq: int
    at: float
    source: str
    stream: str
    text: str

    @property
    def service(self) -> str | None:
        """The service of a replica's line (``web`` of ``web-0``); None for the deployment's own lines."""
        if self.source == "deployment":
            return None
        return self.source.rsplit("-", 1)[0]

    @classmethod
    def from_view(cls, v: Mapping[str, Any]) -> LogLine:
        return cls(int(v["seq"]), float(v.get("at") or 0.0), str(v["source"]), str(v["stream"]), str(v["text"]))


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)


# -- a deployment ---------------------------------------------------------------------------------
class Deployment:
    """A deployment on the local daemon (from :meth:`Services.deploy` or :meth:`Services.attach`).

    ``last`` is the latest status seen (refreshed by :meth:`status`, :meth:`wait_healthy` and
    :meth:`close`). Its local ports are bound when it is created and kept for its life (a failover
    points them at the new replica), so :meth:`endpoint` needs no request.
    """

    def __init__(self, services: Services, status: DeploymentStatus, *, keep: bool) -> None:
        self.deployment_id = status.deployment_id
        self.keep = keep
        """Left running when the ``async with Services()`` block ends."""
        self.last = status
        self._services = services
        self._final: DeploymentStatus | None = None

    def __repr__(self) -> str:
        return f"<Deployment {self.deployment_id} {self.last.state}>"

    @property
    def closed(self) -> bool:
        """Closed through this handle (:meth:`close`, or the end of the ``async with`` block)."""
        return self._final is not None

    async def status(self) -> DeploymentStatus:
        """Its status now."""
        view = await self._services._require_api().deployment(self.deployment_id)
        self.last = DeploymentStatus.from_view(view)
        return self.last

    async def wait_healthy(self, timeout: float = 120.0, *, poll_s: float | None = None) -> DeploymentStatus:
        """Until every replica runs and, when it exposes ports, passes its health check; the status then.

        :class:`NotHealthy` after ``timeout`` seconds, naming every replica not ready and why (its
        state and the daemon's reason: no provider under the price cap, not serving in time, ...);
        :class:`DeploymentEnded` at once if the deployment is (or gets) closed or failed.
        """
        poll = self._services.poll_s if poll_s is None else poll_s
        seen: dict[str, str] = {}  # replica -> its last reason for not running (negotiating again, it has none)
        with trio.move_on_after(timeout):
            while True:
                status = await self.status()
                seen.update((r.name, r.reason) for r in status.replicas if r.reason and r.state != "running")
                if not status.active:
                    raise DeploymentEnded(
                        f"deployment {self.deployment_id} is {status.state}"
                        + (f" ({status.reason})" if status.reason else "") + "; it will not become healthy",
                        status=status)
                if status.ready:
                    return status
                await trio.sleep(poll)
        status = self.last
        waiting = tuple(r for r in status.replicas if not r.ready)

        def why(r: ReplicaStatus) -> str:
            earlier = seen.get(r.name)
            return r.why_not_ready() + (f" (earlier: {earlier})" if earlier and not r.reason and r.state != "running" else "")

        reasons = "; ".join(f"{r.name} {why(r)}" for r in waiting)
        raise NotHealthy(
            f"deployment {self.deployment_id}: {len(waiting)} of {len(status.replicas)} replica(s) not ready after "
            f"{timeout:g} s: {reasons} (see its logs: yagna deploy logs {self.deployment_id})",
            status=status, waiting=waiting)

    def endpoint(self, service: str, container_port: int | None = None, *, replica: int = 0) -> str:
        """``http://127.0.0.1:PORT``: where ``replica`` of ``service`` answers on its ``container_port``
        (the manifest's ``expose[].port``; may be left out when the service exposes one port)."""
        return self.port(service, container_port, replica=replica).url

    def port(self, service: str, container_port: int | None = None, *, replica: int = 0) -> PortMap:
        """The :class:`PortMap` behind :meth:`endpoint` (its ``local_port`` for clients that are not HTTP)."""
        status = self.last
        replicas = status.replicas_of(service)
        if not replicas:
            known = ", ".join(sorted({r.service for r in status.replicas})) or "none"
            raise NoSuchEndpoint(f"deployment {self.deployment_id} has no service {service!r} (its services: {known})")
        rep = next((r for r in replicas if r.replica == replica), None)
        if rep is None:
            raise NoSuchEndpoint(f"service {service!r} of deployment {self.deployment_id} has {len(replicas)} "
                                 f"replica(s), numbered from 0; there is no replica {replica}")
        exposed = ", ".join(str(p.container_port) for p in rep.ports)
        if not rep.ports:
            raise NoSuchEndpoint(f"service {service!r} exposes no port")
        if container_port is None:
            if len(rep.ports) > 1:
                raise NoSuchEndpoint(f"service {service!r} exposes ports {exposed}: say which one")
            return rep.ports[0]
        found = next((p for p in rep.ports if p.container_port == container_port), None)
        if found is None:
            raise NoSuchEndpoint(f"service {service!r} exposes no port {container_port} (it exposes {exposed}: "
                                 "the container ports of the manifest's expose[].port)")
        return found

    def logs(self, *, follow: bool = False, tail: int | None = None, service: str | None = None) -> LogStream:
        """``async for line in dep.logs(...)``: its log, line by line (:class:`LogLine`).

        ``tail``: only the last N lines first (else from its first line); ``follow``: then every new
        line until the deployment ends (closed or failed), else stop at the last line there is now.
        ``service``: only that service's replicas' lines (and the deployment's own news).
        """
        if tail is not None and tail < 0:
            raise SdkError("tail must be >= 0")
        return LogStream(self, follow=follow, tail=tail, service=service)

    async def close(self) -> DeploymentStatus:
        """End it: its containers stop, its agreements end, its channels settle; its final status.

        Shielded from cancellation and bounded (``Services(close_timeout_s=...)``); idempotent.
        """
        if self._final is not None:
            return self._final
        services = self._services
        api = services._require_api()
        view: Any = None
        with trio.CancelScope(shield=True):
            with trio.move_on_after(services.close_timeout_s):
                view = await api.close_deployment(self.deployment_id)
        if view is None:
            raise SdkError(f"deployment {self.deployment_id}: the daemon did not confirm its close within "
                           f"{services.close_timeout_s:g} s")
        self.last = self._final = DeploymentStatus.from_view(view)
        return self._final


class LogStream:
    """The lines of a deployment's log as an async iterator (from :meth:`Deployment.logs`).

    Each step that needs lines asks the daemon for the next page (a follow waits up to
    :data:`FOLLOW_WAIT_S` per request on the daemon's side), so nothing runs between steps and a
    stream left unfinished holds nothing.
    """

    def __init__(self, dep: Deployment, *, follow: bool, tail: int | None, service: str | None) -> None:
        self._dep = dep
        self._follow = follow
        self._tail = tail
        self._service = service
        self._after = 0
        self._first = True
        self._done = False
        self._lines: deque[LogLine] = deque()

    def __aiter__(self) -> LogStream:
        return self

    async def __anext__(self) -> LogLine:
        while not self._lines:
            if self._done:
                raise StopAsyncIteration
            await self._fetch()
        return self._lines.popleft()

    def _wanted(self, line: LogLine) -> bool:
        return self._service is None or line.service in (None, self._service)

    async def _fetch(self) -> None:
        services = self._dep._services
        api = services._require_api()
        deployment_id = self._dep.deployment_id
        first, self._first = self._first, False
        if first and self._tail is not None:
            # tail=0 would answer last_seq 0 (a follow would then replay everything): ask for 1, show none.
            page = await api.deployment_logs(deployment_id, after=0, tail=max(1, self._tail))
            lines = [LogLine.from_view(v) for v in page["lines"]][-self._tail:] if self._tail else []
        else:
            wait = FOLLOW_WAIT_S if self._follow else 0.0
            page = await api.deployment_logs(deployment_id, after=self._after, timeout=wait)
            lines = [LogLine.from_view(v) for v in page["lines"]]
        got = bool(page["lines"])
        self._after = max(self._after, int(page["last_seq"]))
        self._lines.extend(line for line in lines if self._wanted(line))
        if page.get("closed"):
            self._done = True
        elif not self._follow:
            self._done = (first and self._tail is not None) or not got
        elif not got:
            # No new line: the wait ran out, or the deployment is no longer active (the daemon does not
            # wait then). Closed: the next page says so. Failed: it never will; what is left, then stop.
            status = await self._dep.status()
            if status.state == "failed":
                rest = await api.deployment_logs(deployment_id, after=self._after)
                self._lines.extend(line for line in map(LogLine.from_view, rest["lines"]) if self._wanted(line))
                self._done = True
            elif not status.active:
                await trio.sleep(services.poll_s)


# -- the client -----------------------------------------------------------------------------------
class Services:
    """Deployments on a local daemon; use as ``async with Services() as services``.

    The daemon is found like :class:`~requestor_sdk.Requestor` finds it (``data_dir``, else
    ``YAGNA_API_URL`` + ``YAGNA_APPKEY``, else ``YAGNA_DATA_DIR``, else the default data dir), or
    given as ``location``. ``poll_s``: how often :meth:`Deployment.wait_healthy` asks for the
    status; ``close_timeout_s``: how long a close may take (the daemon waits up to 30 s for its
    replicas to stop).
    """

    def __init__(self, *, data_dir: Path | str | None = None, location: DaemonLocation | None = None,
                 poll_s: float = 0.5, close_timeout_s: float = 60.0) -> None:
        if poll_s <= 0 or close_timeout_s <= 0:
            raise SdkError("poll_s and close_timeout_s must be > 0")
        self._data_dir = data_dir
        self._location = location
        self.poll_s = poll_s
        self.close_timeout_s = close_timeout_s
        self.api: Api | None = None
        self.deployments: list[Deployment] = []
        """Every deployment made or attached through this client."""

    async def __aenter__(self) -> Services:
        location = self._location or locate(self._data_dir)
        self.api = Api(location)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        await self.close(raise_errors=exc is None)

    async def close(self, *, raise_errors: bool = True) -> None:
        """Close every deployment made here without ``keep`` (at once, shielded, bounded); idempotent.

        A close that failed (the daemon unreachable, no confirmation in time) is raised when
        ``raise_errors`` (the ``async with`` block ended normally), else only logged: the block's own
        exception is the one that matters then.
        """
        if self.api is None:
            return
        api = self.api
        errors: list[SdkError] = []

        async def close_one(dep: Deployment) -> None:
            try:
                await dep.close()
            except ApiError as exc:
                if exc.code == "unknown-deployment":  # gone already (the daemon restarted): nothing runs
                    return
                errors.append(exc)
            except SdkError as exc:
                errors.append(exc)

        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as nursery:
                for dep in self.deployments:
                    if not dep.keep and not dep.closed:
                        nursery.start_soon(close_one, dep)
            await api.aclose()
        self.api = None
        for error in errors:
            log.warning("closing a deployment failed: %s", error)
        if errors and raise_errors:
            raise errors[0]

    def _require_api(self) -> Api:
        if self.api is None:
            raise SdkError("use Services as `async with Services() as services:` (it is not open)")
        return self.api

    async def deploy(self, manifest: str | os.PathLike[str], *, ports: Mapping[tuple[str, int], int] | None = None,
                     rates: Mapping[str, Decimal | str] | None = None, payment_interval_s: int | None = None,
                     source: str | None = None, keep: bool = False) -> Deployment:
        """Deploy a manifest (Akash SDL v2.0 subset); returns at once, its replicas being placed.

        ``manifest``: a path (a ``Path``, or a one-line string), or the manifest's text (a string with
        a newline). It is checked here first, so its errors come with their line before anything is
        asked of the daemon. ``ports``: ``{(service, container_port): local_port}``; replica i of the
        service gets ``local_port + i`` (any free port otherwise). ``rates``: tokens per unit of a
        foreign denomination (``{"uakt": "0.000001"}``). ``payment_interval_s``: the debit-note
        interval asked of providers (1 to 3600; their presets' otherwise). ``keep``: leave it running
        when the ``async with`` block ends.

        :class:`DeployFailed` when the manifest, a port mapping or the daemon refuses it.
        """
        api = self._require_api()
        text, source = _read_manifest(manifest, source)
        rates_s = {str(k).lower(): str(v) for k, v in (rates or {}).items()}
        port_maps = _check(text, source, rates_s, ports or {})
        if payment_interval_s is not None and not (isinstance(payment_interval_s, int) and 1 <= payment_interval_s <= 3600):
            raise DeployFailed(f"payment_interval_s must be 1 to 3600 seconds, not {payment_interval_s!r}",
                               code="bad-payment-interval")
        # Shielded: the daemon starts the deployment and answers at once; a request cancelled midway
        # would leave it running (and paid) with no id to close it by. Bounded all the same.
        view: Any = None
        with trio.CancelScope(shield=True):
            with trio.move_on_after(CREATE_TIMEOUT_S):
                try:
                    view = await api.create_deployment(text, source=source, rates=rates_s, ports=port_maps,
                                                       payment_interval_s=payment_interval_s)
                except ApiError as exc:
                    if isinstance(exc, DaemonUnreachable) or exc.status in (401, 403):
                        raise  # not about this deployment: no daemon, or not ours to use
                    raise DeployFailed(str(exc), status=exc.status, code=exc.code or "refused") from None
            if view is None:
                raise ApiError(f"the daemon did not answer the deployment of {source} within {CREATE_TIMEOUT_S:g} s; "
                               "it may have started it (see yagna deploy status)", code="timeout")
            dep = Deployment(self, DeploymentStatus.from_view(view), keep=keep)
            self.deployments.append(dep)
        return dep

    async def attach(self, deployment_id: str, *, keep: bool = True) -> Deployment:
        """A handle on an existing deployment (``yagna deploy create``'s, or one kept earlier).

        ``keep=False`` closes it when the ``async with`` block ends, like one made by :meth:`deploy`.
        """
        if not _ID.match(deployment_id):
            raise SdkError(f"not a deployment id: {deployment_id!r}")
        view = await self._require_api().deployment(deployment_id)
        dep = Deployment(self, DeploymentStatus.from_view(view), keep=keep)
        self.deployments.append(dep)
        return dep

    async def list(self) -> list[DeploymentStatus]:
        """Every deployment the daemon knows (closed ones too, until it restarts)."""
        views = await self._require_api().list_deployments()
        return [DeploymentStatus.from_view(v) for v in views]


def _read_manifest(manifest: str | os.PathLike[str], source: str | None) -> tuple[str, str]:
    if isinstance(manifest, str) and "\n" in manifest:
        return manifest, source or "manifest"
    path = Path(manifest)
    try:
        return path.read_text(errors="replace"), source or str(path)
    except OSError as exc:
        raise DeployFailed(f"cannot read the manifest {path}: {exc.strerror or exc}", code="bad-manifest") from None


def _check(text: str, source: str, rates: Mapping[str, str], ports: Mapping[tuple[str, int], int]) -> list[dict[str, Any]]:
    """The manifest and the port mappings checked here (the daemon checks them again); the mappings for the API."""
    from requestor_sdk.sdl import ManifestError, parse_manifest

    try:
        manifest = parse_manifest(text, source=source, rates={k: Decimal(v) for k, v in rates.items()})
    except ManifestError as exc:
        raise DeployFailed(str(exc), code="bad-manifest", line=exc.line, key=exc.key) from None
    except ArithmeticError:
        raise DeployFailed(f"rates: not decimal numbers: {dict(rates)!r}", code="bad-rate") from None
    out = []
    for key, local in ports.items():
        try:
            service, container_port = key
        except (TypeError, ValueError):
            raise DeployFailed(f"ports: {key!r}: expected (service, container_port) keys", code="bad-port") from None
        spec = manifest.services.get(service)
        exposed = [p.port for p in spec.expose] if spec is not None else []
        if container_port not in exposed:
            what = f"exposes {', '.join(map(str, exposed)) or 'no port'}" if spec is not None else "is not in it"
            raise DeployFailed(f"ports: the manifest has no service {service!r} exposing port {container_port} "
                               f"(service {service!r} {what})", code="bad-port")
        count = sum(d.count for d in manifest.deployments if d.service == service)
        if not isinstance(local, int) or isinstance(local, bool) or not 1 <= local <= 65536 - max(1, count):
            raise DeployFailed(f"ports: {service}:{container_port} -> {local!r}: local ports run from it for "
                               f"{count} replica(s), so it must be 1 to {65536 - max(1, count)}", code="bad-port")
        out.append({"service": service, "container_port": container_port, "local_port": local})
    return out
