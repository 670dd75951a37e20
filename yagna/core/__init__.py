"""``yagna.core``: the ground floor every package may import.

Canonical CBOR (:func:`encode`, :func:`decode`), node identity
(:class:`NodeKey`, node ids that are libp2p peer ids), signed envelopes
(:func:`seal`, :func:`open_signed`) and the error tree. It imports nothing of
ours and never libp2p, so the lightweight requestor SDK can use it.

The names below are the public surface, re-exported on purpose and pinned by
``tests/core/test_public_surface.py``; the submodules' other names are
implementation details.
"""

from yagna.core.envelope import Signed, content_id, open_signed, seal
from yagna.core.errors import EncodeError, IdentityError, WireError, YagnaError
from yagna.core.identity import NodeKey, node_id_from_public_key, public_key_from_node_id, verify
from yagna.core.wire import DEFAULT_MAX_SIZE, decode, decode_map, encode

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
