"""Can this machine run the exe-unit? The engine, then the hardened container itself.

``yagna provider init`` and ``yagna provider doctor`` run these checks and print
what to fix when one fails. They reuse the runtime the daemon uses: the probe
container is made by :class:`exeunit.docker_runtime.DockerRuntime` with the same
hardening (no network, all capabilities dropped, read-only root, non-root user,
CPU/memory/pids limits, a tmpfs-backed ``/work`` volume), one command runs in
it, and it is removed.

1. :func:`check_socket`: a Unix socket that is missing or that this user may
   not open is named before docker-py turns it into a vague connection error.
2. :func:`check_engine`: the engine answers (``ping``); its version and cgroup
   version are reported. Connection errors are mapped to a fix (:func:`fix_for`).
3. :func:`probe_image`: the image to probe with, ``yagna-probe:1``, built once
   (no registry) from the host's static busybox; else the test image
   ``local/busybox:1`` if present; else the fix says to install busybox-static.
4. :func:`probe_container`: create, start, run ``id -u`` / write to ``/work`` /
   try to write to ``/``, and remove (also when cancelled).

Every failure is a :class:`DockerCheckFailed` with ``problem`` and ``fix``.
"""

from __future__ import annotations

import getpass
import io
import os
import struct
import tarfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from exeunit.errors import ExeUnitError

DEFAULT_HOST = "unix:///var/run/docker.sock"
PROBE_IMAGE = "yagna-probe:1"
TEST_IMAGE = "local/busybox:1"
LABEL_PROBE = "network.yagna.probe"
PROBE_SCRIPT = ("id -u; if touch /probe 2>/dev/null; then echo root-writable; else echo root-read-only; fi; "
                "echo ok > /work/out/probe && cat /work/out/probe")
START_DOCKER = "start it: sudo systemctl enable --now docker"
INSTALL_DOCKER = "install Docker Engine (Debian: sudo apt-get install docker.io) and " + START_DOCKER


class DockerCheckFailed(ExeUnitError):
    """A check failed: ``problem`` says what, ``fix`` what to do."""

    code = "docker-check-failed"

    def __init__(self, problem: str, fix: str) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}; {fix}")


@dataclass(frozen=True)
class EngineInfo:
    version: str
    cgroup_version: str
    host: str


def engine_host(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return env.get("DOCKER_HOST") or DEFAULT_HOST


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # pragma: no cover - no passwd entry
        return str(os.getuid())


def _socket_path(host: str) -> str | None:
    return host[len("unix://"):] if host.startswith("unix://") else None


def permission_fix(path: str, user: str) -> DockerCheckFailed:
    return DockerCheckFailed(
        f"permission denied on {path}",
        f"add user {user} to group docker: sudo usermod -aG docker {user}, then log out and in again "
        "(or run: newgrp docker)",
    )


def check_socket(host: str, *, user: str | None = None) -> None:
    """Name a missing or forbidden Unix socket (nothing to do for tcp:// and ssh:// hosts)."""
    path = _socket_path(host)
    if path is None:
        return
    if not os.path.exists(path):
        where = f" (DOCKER_HOST={host})" if host != DEFAULT_HOST else ""
        raise DockerCheckFailed(f"Docker is not running: no socket at {path}{where}", INSTALL_DOCKER)
    if not os.access(path, os.R_OK | os.W_OK):
        raise permission_fix(path, user or _user())


def fix_for(exc: BaseException, host: str, *, user: str | None = None) -> DockerCheckFailed:
    """The problem and fix for an engine that did not answer, from docker-py's error."""
    text = repr(exc)
    path = _socket_path(host) or host
    if "Permission denied" in text or "PermissionError" in text:
        return permission_fix(path, user or _user())
    if "Connection refused" in text or "ConnectionRefusedError" in text:
        return DockerCheckFailed(f"Docker is not running: nothing answers on {path}", START_DOCKER)
    if "No such file" in text or "FileNotFoundError" in text:
        return DockerCheckFailed(f"Docker is not running: no socket at {path}", INSTALL_DOCKER)
    return DockerCheckFailed(f"cannot reach the Docker engine at {host}: {str(exc)[:300]}",
                             "check that it runs (sudo systemctl status docker) and that DOCKER_HOST is right")


def client(host: str | None = None, timeout: int = 30) -> Any:
    """A docker-py client for ``host`` (default: the environment's)."""
    import docker

    if host is None:
        return docker.from_env(timeout=timeout)
    return docker.DockerClient(base_url=host, timeout=timeout)


def check_engine(host: str | None = None, *, user: str | None = None,
                 client_factory: Callable[[], Any] | None = None) -> EngineInfo:
    """The engine answers; its version and cgroup version. DockerCheckFailed says what to fix."""
    import docker.errors
    import requests.exceptions

    host = host or engine_host()
    check_socket(host, user=user)
    try:
        api = (client_factory or (lambda: client(host, timeout=10)))().api
        api.ping()
        version = api.version()
        info = api.info()
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
        raise fix_for(exc, host, user=user) from None
    return EngineInfo(version=str(version.get("Version", "?")), cgroup_version=str(info.get("CgroupVersion", "?")),
                      host=host)


# -- the probe image -------------------------------------------------------------------------------------


def is_static_elf(path: str) -> bool:
    """A 64-bit little-endian ELF executable without an interpreter (PT_INTERP): runs in an empty image."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
                return False
            phoff, = struct.unpack_from("<Q", head, 32)
            phentsize, phnum = struct.unpack_from("<HH", head, 54)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except OSError:
        return False
    return all(struct.unpack_from("<I", table, i * phentsize)[0] != 3 for i in range(phnum))


def probe_rootfs(busybox: str) -> bytes:
    """A tar of the smallest root the hardened container runs: busybox, /bin/sh, /work, /tmp."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, mode in (("bin", 0o755), ("work", 0o755), ("tmp", 0o1777), ("proc", 0o755), ("sys", 0o755),
                           ("dev", 0o755), ("etc", 0o755)):
            d = tarfile.TarInfo(name)
            d.type, d.mode = tarfile.DIRTYPE, mode
            if name == "work":
                d.uid = d.gid = 1000
            tf.addfile(d)
        tf.add(busybox, "bin/busybox")
        for applet in ("sh", "id", "touch", "echo", "cat", "sleep"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tf.addfile(link)
        passwd = b"root:x:0:0:root:/root:/bin/sh\nyagna:x:1000:1000:yagna:/work:/bin/sh\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size, info.mode = len(passwd), 0o644
        tf.addfile(info, io.BytesIO(passwd))
    return buf.getvalue()


def probe_image(api: Any, *, busyboxes: tuple[str, ...] = ("/bin/busybox", "/usr/bin/busybox")) -> tuple[str, str]:
    """``(image id, name)`` of the image to probe with (see the module docstring)."""
    import docker.errors

    try:
        return str(api.inspect_image(PROBE_IMAGE)["Id"]), PROBE_IMAGE
    except docker.errors.ImageNotFound:
        pass
    busybox = next((b for b in busyboxes if is_static_elf(b)), None)
    if busybox is not None:
        repo, tag = PROBE_IMAGE.split(":")
        api.import_image_from_data(probe_rootfs(busybox), repository=repo, tag=tag,
                                   changes=["USER 1000:1000", "WORKDIR /work", "ENV PATH=/bin"])
        return str(api.inspect_image(PROBE_IMAGE)["Id"]), PROBE_IMAGE
    try:
        return str(api.inspect_image(TEST_IMAGE)["Id"]), TEST_IMAGE
    except docker.errors.ImageNotFound:
        raise DockerCheckFailed("no image to test the hardened container with (no registry is used)",
                                "install a static busybox: sudo apt-get install busybox-static") from None


# -- the hardened container ------------------------------------------------------------------------------

_START_HINTS = (
    ("NanoCPUs", "the kernel has no CPU quota (CFS bandwidth control); use a kernel built with CONFIG_CFS_BANDWIDTH"),
    ("swap", "the kernel does not account swap: add swapaccount=1 to GRUB_CMDLINE_LINUX in /etc/default/grub, "
             "run sudo update-grub and reboot"),
    ("memory", "the memory cgroup is off: add cgroup_enable=memory to GRUB_CMDLINE_LINUX in /etc/default/grub, "
               "run sudo update-grub and reboot"),
    ("pids", "the kernel has no pids cgroup controller; use a kernel with CONFIG_CGROUP_PIDS"),
    ("tmpfs", "the engine cannot mount tmpfs volumes; a rootful Docker Engine 20.10 or later can (rootless cannot)"),
)


def _start_fix(message: str) -> str:
    for needle, fix in _START_HINTS:
        if needle.lower() in message.lower():
            return fix
    return ("the exe-unit needs CPU, memory (no swap) and pids limits, tmpfs volumes and no-new-privileges: "
            "a rootful Docker Engine on a current Debian kernel has them (docs/exeunit.md)")


async def probe_container(runtime: Any, image_id: str, *, labels: Mapping[str, str] | None = None) -> str:
    """Create, start, exercise and remove one hardened container; a line saying what was seen."""
    import trio

    from exeunit.errors import RuntimeFailure
    from exeunit.runtime import LABEL_NODE, ContainerLimits, ContainerSpec

    spec = ContainerSpec(
        image_id=image_id,
        limits=ContainerLimits(cpu_threads=1.0, memory_bytes=64 * 2**20, storage_bytes=16 * 2**20, pids=64,
                               tmp_bytes=4 * 2**20),
        labels={LABEL_NODE: "provider-check", LABEL_PROBE: "1", **(labels or {})},
    )
    container = None
    try:
        try:
            container = await runtime.create(spec)
            await runtime.start(container)
        except RuntimeFailure as exc:
            raise DockerCheckFailed(f"the hardened container did not start: {exc}", _start_fix(str(exc))) from None
        result = await runtime.exec(container, ["/bin/sh", "-c", PROBE_SCRIPT], env={}, workdir="/work",
                                    timeout_s=30)
    finally:
        if container is not None:
            with trio.CancelScope(shield=True):
                await runtime.remove(container)
    out = result.stdout.decode(errors="replace").split()
    if result.exit_code != 0 or out[:1] != ["1000"] or "root-read-only" not in out or out[-1:] != ["ok"]:
        raise DockerCheckFailed(
            f"the hardened container misbehaved (exit {result.exit_code}, output {' '.join(out)[:200]!r}, "
            f"errors {result.stderr.decode(errors='replace')[:200]!r})",
            "expected uid 1000, a read-only root and a writable /work; check the engine's storage driver "
            "(docker info) and report this output",
        )
    return "started with no network, no capabilities, uid 1000, read-only root, writable /work; removed"


def run_all(*, host: str | None = None, extra_labels: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """Every check in order, blocking; ``(name, what was seen)`` per check, or DockerCheckFailed."""
    import docker.errors
    import requests.exceptions
    import trio

    from exeunit.docker_runtime import DockerRuntime

    host = host or engine_host()
    info = check_engine(host)
    done = [("docker engine", f"Docker {info.version} at {info.host}, cgroup v{info.cgroup_version}")]
    try:
        image_id, name = probe_image(client(host).api)
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
        raise fix_for(exc, host) from None
    runtime = DockerRuntime(lambda: client(host), extra_labels=extra_labels)
    seen = trio.run(probe_container, runtime, image_id)
    done.append(("hardened container", f"{name}: {seen}"))
    return done
