"""Fuzz the decoders of ``yagna.core``: canonical CBOR, signed envelopes, node ids, key files, amounts."""

from __future__ import annotations

from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from yagna.core.envelope import open_signed, seal
from yagna.core.errors import IdentityError, MoneyError, WireError
from yagna.core.identity import NodeKey, _format_key_file, _parse_key_file, public_key_from_node_id, verify
from yagna.core.money import parse_amount
from yagna.core.wire import decode, decode_map, encode

from .strategies import FUZZ, cbor_values, deep, garbage, mutated, only, texts

KEY = NodeKey.from_seed(bytes(range(32)))
SAMPLE = {"a": [1, -2, 3.5, None, True, b"\x00\xff", "é"], 7: {"x": [[]]}}
SEALED = seal(KEY, "yagna/test/1", SAMPLE)
SEALED_PARTS = decode(SEALED)


@FUZZ
@given(garbage(encode(SAMPLE), encode(deep(30))), st.integers(1, 256))
@example(b"\x7f", 32)  # indefinite text
@example(b"\x62\xff\xfe", 32)  # invalid UTF-8
@example(b"\x9b\xff\xff\xff\xff\xff\xff\xff\xff", 32)  # an array of 2**64-1 items
@example(b"\x81" * 300 + b"\x00", 256)  # nested past the hard cap
def test_wire_decode_raises_only_wire_error(data: bytes, depth: int) -> None:
    value = only(WireError, decode, data, max_depth=depth)
    if value is not None:
        assert encode(value) == data  # what decodes is canonical: one byte string per value


@FUZZ
@given(garbage(encode(SAMPLE), encode({"op": "x", "n": 1})))
def test_wire_decode_map_raises_only_wire_error(data: bytes) -> None:
    only(WireError, decode_map, data, required={"op": str, "n": int, "f": (float, type(None))})


@FUZZ
@given(st.one_of(garbage(SEALED), mutated(SEALED_PARTS).map(encode),
                 cbor_values.map(lambda p: seal(KEY, "yagna/test/1", p)),
                 mutated(["yagna/test/1", KEY.public_key, SAMPLE]).map(lambda body: encode([encode(body), KEY.sign(encode(body))]))),
       st.sampled_from([None, "yagna/test/1"]), st.sampled_from([None, KEY.node_id]))
def test_open_signed_raises_only_wire_error(data: bytes, domain: str | None, signer: str | None) -> None:
    only(WireError, open_signed, data, domain=domain, expected_signer=signer)


@FUZZ
@given(st.one_of(cbor_values, texts, st.text(alphabet="123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz",
                                              max_size=70),
                 st.integers(0, 51).map(lambda i: KEY.node_id[:i] + "1" + KEY.node_id[i + 1:])))
@example("1" * 64)
@example("z" * 64)
def test_node_id_decoder_raises_only_wire_error(node_id: object) -> None:
    only(WireError, public_key_from_node_id, node_id)  # type: ignore[arg-type]


@FUZZ
@given(st.one_of(cbor_values, st.binary(min_size=32, max_size=32), st.just(KEY.node_id)),
       st.binary(max_size=64), st.one_of(st.binary(max_size=80), cbor_values))
def test_verify_raises_only_wire_error(signer: object, data: bytes, signature: object) -> None:
    only(WireError, verify, signer, data, signature)  # type: ignore[arg-type]


@FUZZ
@given(garbage(_format_key_file(KEY)))
def test_key_file_parser_raises_only_identity_error(raw: bytes) -> None:
    only(IdentityError, _parse_key_file, raw, Path("node.key"))


@FUZZ
@given(st.one_of(texts, cbor_values, st.decimals(), st.from_regex(r"\s*[0-9]*\.?[0-9]*([eE][+-]?[0-9]{1,12})?\s*",
                                                                   fullmatch=True)))
@example("1e999999999")
@example(".")
@example("0." + "0" * 300)
def test_amount_parser_raises_only_money_error(value: object) -> None:
    only(MoneyError, parse_amount, value)  # type: ignore[arg-type]
