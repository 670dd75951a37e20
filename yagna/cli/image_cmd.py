"""``yagna image pack DOCKER_IMAGE -o FILE.gvmi``: a Golem VM image from a local Docker image.

The file has gvmkit-build's layout (:mod:`exeunit.gvmi`), so Golem providers and
ours read it alike. Golem names it by the sha3-224 of the whole file: once it is
served somewhere, requestors use ``hash:sha3:<hex>:<url>``; ``--url`` prints that
form. Packing needs the local Docker engine and Debian's ``squashfs-tools``; it
talks to no registry.
"""

from __future__ import annotations

from pathlib import Path

import click

from yagna.cli.output import emit

# docker-py and exeunit.gvmi are imported by the command: `yagna --help` does not pay for them.


@click.group()
def image() -> None:
    """Golem VM images (.gvmi) for providers."""


@image.command("pack")
@click.argument("docker_image")
@click.option("-o", "--output", "output", required=True, metavar="FILE.gvmi",
              type=click.Path(dir_okay=False, writable=True, path_type=Path), help="Where to write the image.")
@click.option("--compression", type=click.Choice(["lzo", "gzip", "lz4", "zstd", "xz"]), default="lzo",
              show_default=True, help="squashfs compressor (gvmkit-build's default is lzo).")
@click.option("--url", default=None, metavar="URL",
              help="Where the file will be served: print the full package string.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def image_pack(docker_image: str, output: Path, compression: str, url: str | None, as_json: bool) -> None:
    """Pack the local Docker image DOCKER_IMAGE (name or id) into a .gvmi file."""
    import docker
    import docker.errors

    from exeunit.gvmi import pack

    try:
        client = docker.from_env(timeout=600)
    except docker.errors.DockerException as e:
        raise click.ClickException(f"cannot reach the Docker engine: {e}") from e
    try:
        digest, size = pack(docker_image, output, client, compression=compression)
    finally:
        client.close()
    package = f"hash:sha3:{digest}" + (f":{url}" if url else "")
    data = {"path": str(output), "size": size, "sha3_224": digest, "package": package}
    emit(data, as_json, f"{output}\n  size     {size} bytes\n  package  {package}")
