"""``--metrics-listen HOST:PORT``: an IP address and a port, bound exactly as given (stdlib only)."""

from __future__ import annotations

import ipaddress

EXAMPLE = "127.0.0.1:9464, 0.0.0.0:9464 (every interface) or [::1]:9464"


def parse_listen(text: str) -> tuple[str, int]:
    """``(host, port)`` of ``HOST:PORT``; ValueError saying what is wrong (host: an IPv4 address, or an IPv6
    one in brackets; no names, so the listener is bound to exactly one address; port 1-65535)."""
    text = text.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"must be HOST:PORT, e.g. {EXAMPLE}; not {text!r:.80}")
    if host.startswith("[") and host.endswith("]"):
        host, version = host[1:-1], 6
    else:
        version = 4
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"must name an IP address (no host names), e.g. {EXAMPLE}; not {text!r:.80}") from None
    if ip.version != version:
        raise ValueError(f"an IPv6 address goes in brackets, e.g. [::1]:9464; not {text!r:.80}")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"port must be a number from 1 to 65535, not {port_text!r:.20}")
    return str(ip), int(port_text)


def show(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
