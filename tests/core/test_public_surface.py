"""Pin ``yagna.core``'s public surface and its import boundary (trio style).

Changing ``__all__`` is an API change for every package built on core: update
this list on purpose, never as a side effect.
"""

from __future__ import annotations

import json
import subprocess
import sys

import yagna.core

EXPECTED_ALL = {
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
}


def test_all_is_pinned() -> None:
    assert set(yagna.core.__all__) == EXPECTED_ALL
    assert len(yagna.core.__all__) == len(EXPECTED_ALL)


def test_every_name_in_all_exists() -> None:
    for name in yagna.core.__all__:
        assert getattr(yagna.core, name) is not None, name


def test_error_tree() -> None:
    from yagna.core import EncodeError, IdentityError, WireError, YagnaError

    for error in (WireError, EncodeError, IdentityError):
        assert issubclass(error, YagnaError)
    assert not issubclass(WireError, EncodeError) and not issubclass(EncodeError, WireError)


def test_core_imports_nothing_of_ours_and_no_libp2p() -> None:
    """In a fresh interpreter: import yagna.core and inspect what came along."""
    code = "import json, sys, yagna.core; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    modules = json.loads(out.stdout)
    roots = {name.split(".")[0] for name in modules}
    forbidden_roots = {"libp2p", "trio", "market", "payments", "exeunit", "requestor_sdk", "multiaddr"}
    assert not roots & forbidden_roots, sorted(roots & forbidden_roots)
    ours = [m for m in modules if m == "yagna" or m.startswith("yagna.")]
    outside = [m for m in ours if m != "yagna" and not (m == "yagna.core" or m.startswith("yagna.core."))]
    assert not outside, outside
