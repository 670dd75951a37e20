"""``yagna.core``: the ground floor every package may import.

Canonical CBOR (:func:`encode`, :func:`decode`), node identity
(:class:`NodeKey`, node ids that are libp2p peer ids), signed envelopes
(:func:`seal`, :func:`open_signed`) and the error tree. It imports nothing of
ours and never libp2p, so the lightweight requestor SDK can use it.

The names below are the public surface, re-exported on purpose and pinned by
``tests/core/test_public_surface.py``; the submodules' other names are
implementation details.
"""

from typing import TYPE_CHECKING, Any

from yagna.core.errors import EncodeError, IdentityError, WireError, YagnaError

# Loaded on first use (PEP 562): a CLI command that only needs the error tree
# does not pay for PyNaCl and cbor2.
_LAZY = {
    "Signed": "yagna.core.envelope", "content_id": "yagna.core.envelope", "open_signed": "yagna.core.envelope",
    "seal": "yagna.core.envelope",
    "NodeKey": "yagna.core.identity", "node_id_from_public_key": "yagna.core.identity",
    "public_key_from_node_id": "yagna.core.identity", "verify": "yagna.core.identity",
    "DEFAULT_MAX_SIZE": "yagna.core.wire", "decode": "yagna.core.wire", "decode_map": "yagna.core.wire",
    "encode": "yagna.core.wire",
}

if TYPE_CHECKING:
    from yagna.core.envelope import Signed, content_id, open_signed, seal
    from yagna.core.identity import NodeKey, node_id_from_public_key, public_key_from_node_id, verify
    from yagna.core.wire import DEFAULT_MAX_SIZE, decode, decode_map, encode


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'yagna.core' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_MAX_SIZE",
    "EncodeError",
    "IdentityError",
    "NodeKey",
    "Signed",
    "WireError",
    "YagnaError",
    "content_id",
    "decode",
    "decode_map",
    "encode",
    "node_id_from_public_key",
    "open_signed",
    "public_key_from_node_id",
    "seal",
    "verify",
]
