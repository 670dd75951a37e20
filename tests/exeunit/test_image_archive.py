"""exeunit.image_archive: offline verification of docker-save archives built in tmp_path."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from exeunit.errors import ImageError
from exeunit.image_archive import check_image_id, verify_image_archive


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _add(tf: tarfile.TarFile, name: str, data: bytes | None = None, **attrs: object) -> None:
    info = tarfile.TarInfo(name)
    for k, v in attrs.items():
        setattr(info, k, v)
    if data is not None:
        info.size = len(data)
    tf.addfile(info, io.BytesIO(data) if data is not None else None)


def build(
    path: Path,
    *,
    layers: list[bytes] | None = None,
    oci: bool = False,
    gzip_layers: bool = False,
    repo_tags: list[str] | None = None,
    diff_ids: list[str] | None = None,
    tamper: Callable[[dict[str, bytes], list[dict]], None] | None = None,
    extra: Callable[[tarfile.TarFile], None] | None = None,
) -> str:
    """A docker-save-like archive; returns the image id of its config."""
    layers = layers if layers is not None else [_layer({"etc/hello": b"hi\n"}), _layer({"bin/tool": b"\x7fELF"})]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"User": "1000:1000"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids if diff_ids is not None else [_sha(x) for x in layers]},
    }
    config_bytes = json.dumps(config).encode()
    image_id = _sha(config_bytes)
    files: dict[str, bytes] = {}
    layer_names = []
    for raw in layers:
        blob = gzip.compress(raw) if gzip_layers else raw
        name = f"blobs/sha256/{_sha(blob)[7:]}" if oci else f"{_sha(raw)[7:]}/layer.tar"
        layer_names.append(name)
        files[name] = blob
    config_name = f"blobs/sha256/{image_id[7:]}" if oci else f"{image_id[7:]}.json"
    files[config_name] = config_bytes
    manifest = [{"Config": config_name, "RepoTags": repo_tags, "Layers": layer_names}]
    if tamper is not None:
        tamper(files, manifest)
    files["manifest.json"] = json.dumps(manifest).encode()
    with tarfile.open(path, "w") as tf:
        dirs = sorted({n.rsplit("/", 1)[0] for n in files if "/" in n})
        for d in dirs:
            _add(tf, d, type=tarfile.DIRTYPE, mode=0o755)
        for name, data in files.items():
            _add(tf, name, data)
        if extra is not None:
            extra(tf)
    return image_id


def test_legacy_layout_passes(tmp_path: Path) -> None:
    image_id = build(tmp_path / "a.tar")
    v = verify_image_archive(str(tmp_path / "a.tar"), image_id)
    assert v.image_id == image_id and len(v.layers) == 2 and len(v.diff_ids) == 2


def test_oci_layout_and_gzip_layers_pass(tmp_path: Path) -> None:
    image_id = build(tmp_path / "a.tar", oci=True, gzip_layers=True)
    verify_image_archive(str(tmp_path / "a.tar"), image_id)


def test_image_without_layers_passes(tmp_path: Path) -> None:
    image_id = build(tmp_path / "a.tar", layers=[])
    verify_image_archive(str(tmp_path / "a.tar"), image_id)


def test_wrong_expected_id(tmp_path: Path) -> None:
    build(tmp_path / "a.tar")
    with pytest.raises(ImageError, match="config digest"):
        verify_image_archive(str(tmp_path / "a.tar"), "sha256:" + "ab" * 32)


@pytest.mark.parametrize("bad", ["", "sha256:abc", "md5:" + "0" * 64, "sha256:" + "A" * 64, "0" * 64])
def test_bad_expected_id_format(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ImageError, match="image id"):
        check_image_id(bad)
    with pytest.raises(ImageError):
        verify_image_archive(str(tmp_path / "missing.tar"), bad)


def test_config_with_one_byte_changed(tmp_path: Path) -> None:
    def tamper(files: dict[str, bytes], manifest: list[dict]) -> None:
        name = manifest[0]["Config"]
        files[name] = files[name].replace(b"1000:1000", b"0000:0000")

    image_id = build(tmp_path / "a.tar", tamper=tamper)
    with pytest.raises(ImageError, match="config digest"):
        verify_image_archive(str(tmp_path / "a.tar"), image_id)


def test_layer_swapped(tmp_path: Path) -> None:
    def tamper(files: dict[str, bytes], manifest: list[dict]) -> None:
        files[manifest[0]["Layers"][1]] = _layer({"bin/tool": b"evil"})

    image_id = build(tmp_path / "a.tar", tamper=tamper)
    with pytest.raises(ImageError, match="layer 1"):
        verify_image_archive(str(tmp_path / "a.tar"), image_id)


def test_layers_in_the_wrong_order(tmp_path: Path) -> None:
    def tamper(files: dict[str, bytes], manifest: list[dict]) -> None:
        manifest[0]["Layers"].reverse()

    image_id = build(tmp_path / "a.tar", tamper=tamper)
    with pytest.raises(ImageError, match="layer 0"):
        verify_image_archive(str(tmp_path / "a.tar"), image_id)


def test_gzip_layer_with_wrong_content(tmp_path: Path) -> None:
    good = _layer({"a": b"1"})

    def tamper(files: dict[str, bytes], manifest: list[dict]) -> None:
        files[manifest[0]["Layers"][0]] = gzip.compress(_layer({"a": b"2"}))

    image_id = build(tmp_path / "a.tar", layers=[good], oci=True, gzip_layers=True, tamper=tamper)
    with pytest.raises(ImageError, match="layer 0"):
        verify_image_archive(str(tmp_path / "a.tar"), image_id)


def test_missing_layer(tmp_path: Path) -> None:
    def tamper(files: dict[str, bytes], manifest: list[dict]) -> None:
        del files[manifest[0]["Layers"][0]]

    image_id = build(tmp_path / "a.tar", tamper=tamper)
    with pytest.raises(ImageError, match="missing"):
        verify_image_archive(str(tmp_path / "a.tar"), image_id)


def test_diff_ids_count_mismatch(tmp_path: Path) -> None:
    layers = [_layer({"a": b"1"})]
    image_id = build(tmp_path / "a.tar", layers=layers, diff_ids=[_sha(layers[0]), _sha(b"x")])
    with pytest.raises(ImageError, match="2 layers"):
        verify_image_archive(str(tmp_path / "a.tar"), image_id)


def test_tags_refused(tmp_path: Path) -> None:
    image_id = build(tmp_path / "a.tar", repo_tags=["ubuntu:latest"])
    with pytest.raises(ImageError, match="tags"):
        verify_image_archive(str(tmp_path / "a.tar"), image_id)


def test_repositories_file_refused(tmp_path: Path) -> None:
    repos = json.dumps({"ubuntu": {"latest": "0" * 64}}).encode()
    image_id = build(tmp_path / "a.tar", extra=lambda tf: _add(tf, "repositories", repos))
    with pytest.raises(ImageError, match="repositories"):
        verify_image_archive(str(tmp_path / "a.tar"), image_id)


def test_two_images_refused(tmp_path: Path) -> None:
    def tamper(files: dict[str, bytes], manifest: list[dict]) -> None:
        manifest.append(dict(manifest[0]))

    image_id = build(tmp_path / "a.tar", tamper=tamper)
    with pytest.raises(ImageError, match="exactly one"):
        verify_image_archive(str(tmp_path / "a.tar"), image_id)


@pytest.mark.parametrize(
    "member",
    [
        {"name": "link", "type": tarfile.SYMTYPE, "linkname": "/etc/passwd"},
        {"name": "hard", "type": tarfile.LNKTYPE, "linkname": "manifest.json"},
        {"name": "/abs", "data": b"x"},
        {"name": "../up", "data": b"x"},
        {"name": "a/../../up", "data": b"x"},
        {"name": "dev", "type": tarfile.CHRTYPE},
        {"name": "fifo", "type": tarfile.FIFOTYPE},
    ],
)
def test_unsafe_members_refused(tmp_path: Path, member: dict) -> None:
    member = dict(member)
    data = member.pop("data", None)
    image_id = build(tmp_path / "a.tar", extra=lambda tf: _add(tf, member.pop("name"), data, **member))
    with pytest.raises(ImageError):
        verify_image_archive(str(tmp_path / "a.tar"), image_id)


def test_symlinked_layer_refused(tmp_path: Path) -> None:
    # docker save may dedupe a layer as a symlink; a link may point anywhere: refused.
    def tamper(files: dict[str, bytes], manifest: list[dict]) -> None:
        manifest[0]["Layers"][1] = "link/layer.tar"

    image_id = build(
        tmp_path / "a.tar",
        tamper=tamper,
        extra=lambda tf: _add(tf, "link/layer.tar", type=tarfile.SYMTYPE, linkname="../x/layer.tar"),
    )
    with pytest.raises(ImageError, match="link"):
        verify_image_archive(str(tmp_path / "a.tar"), image_id)


def test_duplicate_member_refused(tmp_path: Path) -> None:
    image_id = build(tmp_path / "a.tar", extra=lambda tf: _add(tf, "manifest.json", b"[]"))
    with pytest.raises(ImageError, match="duplicate"):
        verify_image_archive(str(tmp_path / "a.tar"), image_id)


def test_manifest_path_escaping_refused(tmp_path: Path) -> None:
    def tamper(files: dict[str, bytes], manifest: list[dict]) -> None:
        manifest[0]["Layers"][0] = "../../etc/passwd"

    image_id = build(tmp_path / "a.tar", tamper=tamper)
    with pytest.raises(ImageError, match="refused"):
        verify_image_archive(str(tmp_path / "a.tar"), image_id)


@pytest.mark.parametrize("content", [b"", b"not a tar at all" * 100])
def test_not_a_tar(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "a.tar").write_bytes(content)
    with pytest.raises(ImageError):
        verify_image_archive(str(tmp_path / "a.tar"), "sha256:" + "0" * 64)


def test_missing_manifest_and_bad_json(tmp_path: Path) -> None:
    with tarfile.open(tmp_path / "a.tar", "w") as tf:
        _add(tf, "other", b"x")
    with pytest.raises(ImageError, match="manifest.json"):
        verify_image_archive(str(tmp_path / "a.tar"), "sha256:" + "0" * 64)
    with tarfile.open(tmp_path / "b.tar", "w") as tf:
        _add(tf, "manifest.json", b"{nope")
    with pytest.raises(ImageError, match="not JSON"):
        verify_image_archive(str(tmp_path / "b.tar"), "sha256:" + "0" * 64)
