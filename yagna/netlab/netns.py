"""Run a function, or open a socket, inside a named network namespace from this process.

A node of the testbed serves its REST API on its own namespace's 127.0.0.1, which the host
cannot reach. Python 3.11 has no ``os.setns``, so this calls setns(2) through ctypes, in a
fresh thread: the network namespace is a per-thread attribute on Linux, so only that thread
moves, and it dies afterwards (nothing else in the process ever runs in the wrong namespace,
even if moving back failed). A socket keeps the namespace it was created in, so a socket
made there can be used from any thread afterwards.
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading
from collections.abc import Callable
from typing import TypeVar

from yagna.netlab.errors import NetlabError, NotSupported

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"

_libc: ctypes.CDLL | None = None


def _setns(fd: int) -> None:
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(None, use_errno=True)
            _libc.setns  # noqa: B018 - fail here if the C library has no setns
        except (OSError, AttributeError) as exc:
            raise NotSupported(f"setns(2) is not available here: {exc}") from None
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NetlabError(f"setns into a network namespace failed: {os.strerror(err)}")


def run_in_netns(ns: str, fn: Callable[[], T], timeout: float | None = None) -> T:
    """``fn()`` run in a new thread that has entered namespace ``ns``; its result or exception."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
            try:
                try:
                    fd = os.open(f"{NETNS_DIR}/{ns}", os.O_RDONLY)
                except FileNotFoundError:
                    raise NetlabError(f"no network namespace {ns!r}") from None
                try:
                    _setns(fd)
                finally:
                    os.close(fd)
                try:
                    box["value"] = fn()
                finally:
                    _setns(own)
            finally:
                os.close(own)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"netns:{ns}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise NetlabError(f"call in namespace {ns!r} did not finish within {timeout}s")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def socket_in_netns(ns: str, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A new socket that lives in namespace ``ns`` (bind, connect and use it from anywhere)."""
    return run_in_netns(ns, lambda: socket.socket(family, kind))
