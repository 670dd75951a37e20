"""Fuzz the exe-unit's decoders: exe-scripts, transfer ranges and blob ids, paths, receipts, cgroup
files and ``docker save`` archives (an image reaches a provider from a stranger)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from exeunit import cgroup
from exeunit.commands import parse_script, script_to_wire
from exeunit.errors import ImageError, ScriptError, TransferRefused
from exeunit.image_archive import verify_image_archive
from exeunit.paths import container_path, local_path_inside, normalise
from exeunit.receipt import ReceiptInvalid, check_results, open_receipt, rows_of, seal_receipt
from exeunit.transfer import Sha256Sink, check_range, parse_blob_id
from yagna.core.envelope import seal
from yagna.core.identity import NodeKey
from yagna.core.wire import decode

from .strategies import FUZZ, cbor_values, corrupted, garbage, json_values, mutated, only, texts

HEX = "ab" * 32
SCRIPT: list[dict[str, object]] = [
    {"deploy": {"image": "sha256:" + HEX, "name": "busybox", "env": {"A": "1"}}},
    {"start": {}},
    {"transfer_in": {"to": "/work/in/data.csv", "sha256": HEX, "size": 12}},
    {"run": {"argv": ["sh", "-c", "echo hi"], "env": {}, "workdir": "/work", "timeout": 60.0}},
    {"transfer_out": {"from": "/work/out/result.json"}},
    {"terminate": {}},
]
paths = st.one_of(texts, st.sampled_from(["/work/in/a", "/work/in/../etc", "/work/in//a/./b/", "/work/in", "/\x00",
                                          "/work/in/" + "a" * 300, "/work/in/\udcff", "work/in/a", "/work/in/.."]))


@FUZZ
@given(st.one_of(cbor_values, mutated(SCRIPT), st.lists(mutated(SCRIPT[3]), max_size=3)))
@example([{"run": {"argv": ["\udcff"]}}])  # a lone surrogate (JSON can carry one)
@example([{"run": {"argv": ["x"], "timeout": float("nan")}}])
@example([{"run": {"argv": ["x"], "timeout": 2**64}}])
def test_exe_script_parser_raises_only_script_error(script: object) -> None:
    commands = only(ScriptError, parse_script, script)
    if commands is not None:
        assert parse_script(script_to_wire(commands)) == commands


@FUZZ
@given(cbor_values, cbor_values, st.integers(0, 2**40), st.integers(0, 2**20))
def test_chunk_range_check_raises_only_transfer_refused(offset: object, length: object, size: int, chunk: int) -> None:
    only(TransferRefused, check_range, offset, length, size=size, max_chunk=chunk)


@FUZZ
@given(st.one_of(cbor_values, st.sampled_from(["file:" + HEX, "image:sha256:" + HEX, "image:" + HEX, "file:" + HEX.upper()]),
                 st.text(alphabet="fileimagsh256:0123456789abcdef", max_size=80)))
def test_blob_id_parser_raises_only_transfer_refused(blob_id: object) -> None:
    only(TransferRefused, parse_blob_id, blob_id)


@FUZZ
@given(st.lists(st.binary(max_size=40), max_size=6), st.integers(0, 100))
def test_transfer_sink_raises_only_transfer_refused(chunks: list[bytes], declared: int) -> None:
    sink = Sha256Sink(HEX, declared, max_bytes=64) if declared <= 64 else None
    if sink is None:
        only(TransferRefused, Sha256Sink, HEX, declared, max_bytes=64)
        return
    for chunk in chunks:
        if only(TransferRefused, sink.write, chunk) is None:
            break
    only(TransferRefused, sink.finish)


@FUZZ
@given(st.one_of(paths, cbor_values))
def test_path_checks_raise_only_transfer_refused(path: object) -> None:
    only(TransferRefused, normalise, path)
    only(TransferRefused, container_path, path, under="/work/in")
    with tempfile.TemporaryDirectory() as root:
        only(TransferRefused, local_path_inside, Path(root), path)  # type: ignore[arg-type]


# -- receipts -------------------------------------------------------------------------------------

PROVIDER = NodeKey.from_seed(b"p" * 32)
IDS = {"network_id": "net", "agreement_id": "ag", "activity_id": "act", "batch_id": "b1"}
RESULTS: list[dict[str, Any] | None] = [
    {"index": 0, "command": "run", "exit_code": 0, "stdout": "hi\n"},
    {"index": 1, "command": "transfer_out", "sha256": HEX, "size": 3},
    None,
]
RECEIPT = seal_receipt(PROVIDER, **IDS, rows=rows_of(RESULTS))


@FUZZ
@given(st.one_of(garbage(RECEIPT), mutated(decode(decode(RECEIPT)[0])[2]).map(  # type: ignore[index]
    lambda p: seal(PROVIDER, "yagna/receipt/1", p))),
       st.one_of(st.just(RESULTS), mutated(RESULTS), cbor_values))
@example(RECEIPT, [{"command": "run"}])  # a provider's result without an index
@example(RECEIPT, [{"index": 0, "command": "run", "stdout": b"\xff"}])  # bytes, not text
@example(RECEIPT, ["not a map"])
def test_receipt_checks_raise_only_receipt_invalid(raw: bytes, results: Any) -> None:
    receipt = only(ReceiptInvalid, open_receipt, raw, provider=PROVIDER.node_id, **IDS)
    if receipt is not None:
        only(ReceiptInvalid, check_results, receipt, results)


# -- cgroup files ------------------------------------------------------------------------------

MOUNTINFO = ("30 25 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
             "31 25 0:27 /docker /sys/fs/cgroup/mem\\040ory rw - cgroup cgroup rw,memory\n")
kernel_texts = st.one_of(texts, st.text(alphabet="0123456789 :,-/\\\nabcmemory()max²٣", max_size=120),
                         st.sampled_from([MOUNTINFO, "0::/docker/abc\n4:cpu,cpuacct:/x\n", "usage_usec 12\noom_kill 1\n",
                                          "12 (sh) S 1 12", "max\n", "1\n2\n²\n"]))


@FUZZ
@given(kernel_texts, kernel_texts)
@example("31 25 0:27 /d\\999 /m rw - cgroup cgroup rw,memory", "")  # not an octal escape
@example("1\n²\n", "")  # a digit int() does not take
def test_cgroup_parsers_never_raise(text: str, other: str) -> None:
    mounts = cgroup.parse_mountinfo(text)
    procs = cgroup.parse_proc_cgroup(other)
    for controller in ("memory", "cpuacct", "pids"):
        cgroup.cgroup_dir(controller, procs, mounts)
    cgroup.parse_flat_keyed(text)
    cgroup.parse_int(text)
    cgroup.parse_pids(text)
    cgroup.cpu_seconds_v1(text)
    cgroup.cpu_seconds_v2(text)
    cgroup.oom_kills(text)
    cgroup.parse_proc_stat_ppid(text)


# -- image archives ----------------------------------------------------------------------------

LAYER = b"layer bytes" * 20
CONFIG: dict[str, object] = {"architecture": "amd64", "rootfs": {"type": "layers",
                                                                  "diff_ids": ["sha256:" + hashlib.sha256(LAYER).hexdigest()]}}


def _archive(manifest: object, config: object, *, layer: bytes = LAYER, extra: dict[str, bytes] | None = None) -> tuple[bytes, str]:
    raw_config = json.dumps(config).encode()
    files = {"manifest.json": json.dumps(manifest).encode(), "cfg.json": raw_config, "l1/layer.tar": layer, **(extra or {})}
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return out.getvalue(), "sha256:" + hashlib.sha256(raw_config).hexdigest()


MANIFEST = [{"Config": "cfg.json", "RepoTags": None, "Layers": ["l1/layer.tar"]}]
VALID, IMAGE_ID = _archive(MANIFEST, CONFIG)


def _deep_json(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


archives = st.one_of(
    corrupted(VALID).map(lambda b: (b, IMAGE_ID)),
    mutated(MANIFEST, json_values).map(lambda m: _archive(m, CONFIG)),
    mutated(CONFIG, json_values).map(lambda c: _archive(MANIFEST, c)),
    st.binary(max_size=200).map(lambda layer: _archive(MANIFEST, CONFIG, layer=b"\x1f\x8b" + layer)),
    st.just(_archive(MANIFEST, CONFIG, extra={"manifest.json": b"x"})),
)


def _verify(data: bytes, image_id: str) -> None:
    with tempfile.NamedTemporaryFile(suffix=".tar") as f:
        f.write(data)
        f.flush()
        only(ImageError, verify_image_archive, f.name, image_id)


@FUZZ
@given(archives)
@example((VALID, IMAGE_ID))
@example((VALID[:700], IMAGE_ID))  # the last member cut short
def test_image_archive_check_raises_only_image_error(archive: tuple[bytes, str]) -> None:
    _verify(*archive)


def test_deeply_nested_manifest_is_an_image_error() -> None:
    data = _archive(MANIFEST, CONFIG)[0]
    nested = io.BytesIO()
    with tarfile.open(fileobj=nested, mode="w") as tf:
        info = tarfile.TarInfo("manifest.json")
        body = _deep_json(100_000)
        info.size = len(body)
        tf.addfile(info, io.BytesIO(body))
    assert data
    _verify(nested.getvalue(), IMAGE_ID)


def test_gzip_layer_with_a_corrupt_deflate_stream_is_an_image_error() -> None:
    import gzip

    good = gzip.compress(b"x" * 4000)
    bad = good[:20] + bytes(b ^ 0x55 for b in good[20:40]) + good[40:]
    _verify(*_archive(MANIFEST, CONFIG, layer=bad))


def test_the_archive_builder_makes_a_valid_one() -> None:
    with tempfile.NamedTemporaryFile(suffix=".tar") as f:
        f.write(VALID)
        f.flush()
        assert verify_image_archive(f.name, IMAGE_ID).image_id == IMAGE_ID

