"""yagna-forward (exeunit/forwarder): the static C bridge from Unix sockets to TCP ports.

The binary runs here on the host, as a subprocess, against trio TCP servers on 127.0.0.1;
the tests connect to its Unix sockets like the daemon does. Built once per session; skipped
only when there is no C compiler at all. No timing asserts: ``fail_after`` only ends hangs.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import stat
import subprocess
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import pytest
import trio

from exeunit import forwarder
from exeunit.errors import RuntimeFailure

Handler = Callable[[trio.SocketStream], Awaitable[None]]
TIMEOUT = 20


@pytest.fixture(scope="session")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if forwarder.find_compiler() is None:
        pytest.skip("no C compiler to build yagna-forward")
    return forwarder.build(tmp_path_factory.mktemp("forwarder") / forwarder.BINARY_NAME)


@pytest.fixture
def sock_dir(tmp_path: Path) -> Iterator[Path]:
    """tmp_path, unless DIR/65535.sock would not fit in sun_path (107 bytes)."""
    if len(os.fsencode(tmp_path)) <= 90:
        yield tmp_path
        return
    short = Path(tempfile.mkdtemp(prefix="yf-"))
    try:
        yield short
    finally:
        for p in short.iterdir():
            p.unlink()
        short.rmdir()


@asynccontextmanager
async def running(binary: Path, sock_dir: Path, *ports: int, env: dict[str, str] | None = None) -> AsyncIterator[trio.Process]:
    """yagna-forward for these ports, once it said ``ready``; killed at the end if still running."""
    proc = await trio.lowlevel.open_process(
        [str(binary), str(sock_dir), *map(str, ports)], stdout=subprocess.PIPE, env={**os.environ, **(env or {})}
    )
    try:
        assert proc.stdout is not None
        out = b""
        with trio.fail_after(TIMEOUT):
            while b"\n" not in out:
                chunk = await proc.stdout.receive_some()
                assert chunk, f"yagna-forward exited before ready: {out!r}"
                out += chunk
        assert out == b"ready\n"
        yield proc
    finally:
        with trio.CancelScope(shield=True):
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
            if proc.stdout is not None:
                await proc.stdout.aclose()


@asynccontextmanager
async def tcp_server(handler: Handler) -> AsyncIterator[int]:
    """A trio TCP server on 127.0.0.1 running ``handler`` per connection; yields its port.
    A client going away (reset, closed) just ends its handler."""

    async def guarded(stream: trio.SocketStream) -> None:
        try:
            await handler(stream)
        except trio.BrokenResourceError:
            pass

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, guarded, 0, host="127.0.0.1"))
        yield listeners[0].socket.getsockname()[1]
        nursery.cancel_scope.cancel()


def closed_port() -> int:
    """A port nothing listens on (bound, never listened, released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def echo(stream: trio.SocketStream) -> None:
    async for chunk in stream:
        await stream.send_all(chunk)
    await stream.send_eof()


async def receive_all(stream: trio.abc.ReceiveStream) -> bytes:
    out = bytearray()
    async for chunk in stream:
        out += chunk
    return bytes(out)


async def round_trip(path: Path, message: bytes) -> bytes:
    """Send ``message``, half-close, read everything back."""
    stream = await trio.open_unix_socket(str(path))
    async with stream:
        await stream.send_all(message)
        await stream.send_eof()
        return await receive_all(stream)


async def receive_exactly(stream: trio.SocketStream, n: int) -> bytes:
    """``n`` bytes, or fewer if the stream ends first."""
    out = b""
    while len(out) < n and (chunk := await stream.receive_some(n - len(out))):
        out += chunk
    return out


async def answer_or_end(path: Path, message: bytes) -> bytes:
    """``round_trip``, with b"" when the forwarder closes (or resets) the connection."""
    try:
        return await round_trip(path, message)
    except trio.BrokenResourceError:
        return b""


async def ends_without_data(stream: trio.SocketStream) -> bool:
    """True if the stream ends (EOF or a reset) before any byte arrives."""
    try:
        return await stream.receive_some() == b""
    except trio.BrokenResourceError:
        return True


async def test_ready_sockets_are_connectable_by_anyone(binary: Path, sock_dir: Path) -> None:
    async with tcp_server(echo) as port, running(binary, sock_dir, port):
        mode = (sock_dir / f"{port}.sock").stat().st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o666


async def test_stale_socket_file_is_replaced(binary: Path, sock_dir: Path) -> None:
    async with tcp_server(echo) as port:
        (sock_dir / f"{port}.sock").write_bytes(b"stale")
        async with running(binary, sock_dir, port):
            with trio.fail_after(TIMEOUT):
                assert await round_trip(sock_dir / f"{port}.sock", b"fresh") == b"fresh"


async def test_8_mib_of_random_bytes_come_back_intact(binary: Path, sock_dir: Path) -> None:
    data = os.urandom(8 * 2**20)
    async with tcp_server(echo) as port, running(binary, sock_dir, port):
        stream = await trio.open_unix_socket(str(sock_dir / f"{port}.sock"))
        received = hashlib.sha256()
        size = 0

        async def send() -> None:
            for i in range(0, len(data), 100_000):
                await stream.send_all(data[i : i + 100_000])
            await stream.send_eof()

        with trio.fail_after(TIMEOUT):
            async with stream, trio.open_nursery() as nursery:
                nursery.start_soon(send)
                async for chunk in stream:
                    received.update(chunk)
                    size += len(chunk)
    assert size == len(data)
    assert received.hexdigest() == hashlib.sha256(data).hexdigest()


async def test_half_close_the_answer_still_comes_after_our_eof(binary: Path, sock_dir: Path) -> None:
    async def answer_after_eof(stream: trio.SocketStream) -> None:
        request = await receive_all(stream)  # the request ends with the client's EOF
        await stream.send_all(b"got %d bytes\n" % len(request) + b"z" * 2**20)

    async with tcp_server(answer_after_eof) as port, running(binary, sock_dir, port):
        with trio.fail_after(TIMEOUT):
            answer = await round_trip(sock_dir / f"{port}.sock", b"q" * 300_000)
    assert answer == b"got 300000 bytes\n" + b"z" * 2**20


async def test_200_concurrent_short_connections_are_all_answered(binary: Path, sock_dir: Path) -> None:
    answers: dict[int, bytes] = {}

    async def one(i: int) -> None:
        answers[i] = await round_trip(sock_dir / f"{port}.sock", b"hello %d" % i)

    async with tcp_server(echo) as port, running(binary, sock_dir, port):
        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                for i in range(200):
                    nursery.start_soon(one, i)
    assert answers == {i: b"hello %d" % i for i in range(200)}


def _vm_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _kernel_buffers_max() -> int:
    """The most the kernel may hold on one flooded path (TCP send + receive buffers), or 64 MiB."""
    try:
        rmem = int(Path("/proc/sys/net/ipv4/tcp_rmem").read_text().split()[2])
        wmem = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
        return rmem + wmem
    except (OSError, ValueError, IndexError):
        return 64 * 2**20


async def test_a_slow_reader_stalls_neither_the_forwarder_nor_other_connections(binary: Path, sock_dir: Path) -> None:
    pattern = bytes(range(256)) * 256  # 64 KiB
    flooded = trio.Event()
    sent = 0

    async def flood_or_echo(stream: trio.SocketStream) -> None:
        nonlocal sent
        first = await receive_exactly(stream, 5)
        if first != b"flood":
            await stream.send_all(b"echo:" + first)
            await echo(stream)
            return
        while True:  # until the client goes away: what it does not read must hold us back
            await stream.send_all(pattern)
            sent += len(pattern)
            flooded.set()  # it has begun; it stalls at well under 1 MiB here

    async with tcp_server(flood_or_echo) as port, running(binary, sock_dir, port) as proc:
        path = sock_dir / f"{port}.sock"
        with trio.fail_after(TIMEOUT):
            slow = await trio.open_unix_socket(str(path))
            async with slow:
                await slow.send_all(b"flood")
                await flooded.wait()
                for i in range(50):  # the flooded connection never reads meanwhile
                    assert await round_trip(path, b"ping %d" % i) == b"echo:ping %d" % i
                await trio.sleep(0.5)  # let an unbounded forwarder show itself
                # Real back-pressure: what the server got out is what kernel buffers hold,
                # and the forwarder's own memory stays small.
                assert sent < _kernel_buffers_max() + 16 * 2**20, sent
                assert _vm_rss_bytes(proc.pid) < 16 * 2**20
                # The slow reader finally reads: its bytes are intact, in order.
                assert await receive_exactly(slow, 4 * len(pattern)) == pattern * 4


async def test_refused_backend_ends_the_connection_and_the_forwarder_keeps_serving(binary: Path, sock_dir: Path) -> None:
    refused = closed_port()
    async with tcp_server(echo) as port, running(binary, sock_dir, refused, port) as proc:
        with trio.fail_after(TIMEOUT):
            for _ in range(3):
                stream = await trio.open_unix_socket(str(sock_dir / f"{refused}.sock"))
                async with stream:
                    assert await ends_without_data(stream)
            assert await round_trip(sock_dir / f"{port}.sock", b"still here") == b"still here"
        assert proc.returncode is None


async def test_backend_on_ipv6_loopback_only_is_reached(binary: Path, sock_dir: Path) -> None:
    try:
        listeners = await trio.open_tcp_listeners(0, host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    port = listeners[0].socket.getsockname()[1]
    try:
        with socket.socket() as probe:  # 127.0.0.1:port must refuse, so ::1 is what answers
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                pytest.skip("127.0.0.1 has the same port taken")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, echo, listeners)
            async with running(binary, sock_dir, port):
                with trio.fail_after(TIMEOUT):
                    assert await round_trip(sock_dir / f"{port}.sock", b"over v6") == b"over v6"
            nursery.cancel_scope.cancel()
    finally:
        for listener in listeners:
            await listener.aclose()


async def test_backend_reset_ends_the_client_connection(binary: Path, sock_dir: Path) -> None:
    async def reset_or_echo(stream: trio.SocketStream) -> None:
        first = await receive_exactly(stream, 5)
        if first != b"reset":
            await stream.send_all(first)
            await echo(stream)
            return
        await stream.send_all(b"partial answer")
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        stream.socket.close()  # with linger 0: a RST

    async with tcp_server(reset_or_echo) as port, running(binary, sock_dir, port) as proc:
        with trio.fail_after(TIMEOUT):
            stream = await trio.open_unix_socket(str(sock_dir / f"{port}.sock"))
            async with stream:
                await stream.send_all(b"reset")
                try:
                    while await stream.receive_some():
                        pass
                except trio.BrokenResourceError:
                    pass  # a reset is an end too
            assert await round_trip(sock_dir / f"{port}.sock", b"hello again") == b"hello again"
        assert proc.returncode is None


async def test_connections_past_the_bound_are_closed_at_once(binary: Path, sock_dir: Path) -> None:
    async with tcp_server(echo) as port, running(binary, sock_dir, port, env={"YAGNA_FORWARD_MAX_CONN": "2"}):
        path = str(sock_dir / f"{port}.sock")
        with trio.fail_after(TIMEOUT):
            held = [await trio.open_unix_socket(path) for _ in range(2)]
            for i, stream in enumerate(held):  # a round trip each: both are bridged
                await stream.send_all(b"held %d" % i)
                assert await stream.receive_some() == b"held %d" % i
            third = await trio.open_unix_socket(path)
            async with third:
                assert await ends_without_data(third)
            await held.pop().aclose()
            # A freed slot serves again (the close may be seen just after the next connect).
            while (answer := await answer_or_end(Path(path), b"next")) != b"next":
                assert answer == b""
                await trio.sleep(0.01)
            await held.pop().aclose()


async def test_sigterm_exits_0_and_removes_the_sockets(binary: Path, sock_dir: Path) -> None:
    async with tcp_server(echo) as port, running(binary, sock_dir, port, 65535) as proc:
        with trio.fail_after(TIMEOUT):
            stream = await trio.open_unix_socket(str(sock_dir / f"{port}.sock"))  # an open connection does not hold it
            async with stream:
                await stream.send_all(b"x")
                assert await stream.receive_some() == b"x"
                proc.send_signal(signal.SIGTERM)
                assert await proc.wait() == 0
    assert list(sock_dir.iterdir()) == []


async def test_probe_says_whether_a_port_listens(binary: Path) -> None:
    async with tcp_server(echo) as port:
        ok = await trio.run_process([str(binary), "--probe", str(port)], check=False)
        ok_fast = await trio.run_process([str(binary), "--probe", str(port), "500"], check=False)
    closed = await trio.run_process([str(binary), "--probe", str(closed_port()), "500"], check=False)
    assert (ok.returncode, ok_fast.returncode, closed.returncode) == (0, 0, 1)


async def test_version(binary: Path) -> None:
    done = await trio.run_process([str(binary), "--version"], capture_stdout=True)
    assert done.stdout == b"yagna-forward 1\n"


@pytest.mark.parametrize(
    "args, env",
    [
        ([], {}),
        (["{dir}"], {}),
        (["{dir}", "0"], {}),
        (["{dir}", "65536"], {}),
        (["{dir}", "80x"], {}),
        (["{dir}", "8080", "8080"], {}),
        (["{dir}/missing", "8080"], {}),
        (["{dir}/" + "d" * 120, "8080"], {}),
        (["{dir}", "8080"], {"YAGNA_FORWARD_MAX_CONN": "0"}),
        (["{dir}", "8080"], {"YAGNA_FORWARD_MAX_CONN": "lots"}),
        (["--probe"], {}),
        (["--probe", "0"], {}),
        (["--probe", "80", "soon"], {}),
        (["--bogus", "8080"], {}),
    ],
)
async def test_bad_arguments_exit_2(binary: Path, sock_dir: Path, args: list[str], env: dict[str, str]) -> None:
    argv = [str(binary), *(a.format(dir=sock_dir) for a in args)]
    done = await trio.run_process(argv, check=False, capture_stderr=True, env={**os.environ, **env})
    assert done.returncode == 2, done
    assert done.stderr.startswith(b"yagna-forward: ")
    assert list(sock_dir.iterdir()) == []


# --- the Python helpers ------------------------------------------------------------


def test_build_skips_an_up_to_date_binary_and_replaces_a_stale_one(binary: Path, tmp_path: Path) -> None:
    dest = tmp_path / "bin" / "yf"
    assert forwarder.build(dest) == dest and os.access(dest, os.X_OK)
    first = dest.stat().st_ino
    assert forwarder.build(dest) == dest and dest.stat().st_ino == first  # not rebuilt
    source_mtime = forwarder.SOURCE.stat().st_mtime
    os.utime(dest, (source_mtime - 10, source_mtime - 10))
    forwarder.build(dest)
    assert dest.stat().st_ino != first  # rebuilt, under a new name then renamed
    assert [p.name for p in dest.parent.iterdir()] == ["yf"]  # no temporary left


def test_build_without_a_compiler_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(RuntimeFailure) as caught:
        forwarder.build(tmp_path / "yf", cc="no-such-cc-anywhere")
    assert caught.value.code == "no-forwarder"
    assert "gcc" in str(caught.value) and "libc6-dev" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_build_failure_is_a_runtime_failure(tmp_path: Path) -> None:
    with pytest.raises(RuntimeFailure) as caught:
        forwarder.build(tmp_path / "yf", cc="false")  # a "compiler" that fails
    assert caught.value.code == "no-forwarder"
    assert list(tmp_path.iterdir()) == []


def test_find_binary_prefers_the_environment(binary: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(forwarder.ENV_BINARY, str(binary))
    assert forwarder.find_binary() == binary
    monkeypatch.setenv(forwarder.ENV_BINARY, str(tmp_path / "absent"))
    default = forwarder.default_binary()
    assert forwarder.find_binary() == (default if os.access(default, os.X_OK) else None)
    assert default.parent.name == "bin" and default.name == "yagna-forward"
