"""The rendering demo's pieces: the renderer, its image, the job file, the assembler.

- examples/render/mandel.c compiled here (gcc -O2 -static): deterministic, a
  valid P6 of the asked size, frames differ, bad arguments refused.
- scripts/build-render-image.sh builds ``local/render:1``; a frame rendered in a
  container run the way providers run it (no network, read-only root, no
  capabilities, user 1000:1000) is byte-identical to the local binary's.
- examples/render/job.toml: 24 tasks, frames 0..23, the command renders them.
- examples/render/assemble.py: frames -> an animated GIF with that many frames;
  a missing or invalid frame is refused with a clear error.

No gcc or no Docker engine: skipped locally, but FAILS under CI (``CI`` set).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
RENDER = ROOT / "examples" / "render"
BUILD_SCRIPT = ROOT / "scripts" / "build-render-image.sh"
IMAGE = "local/render:1"
SESSION_LABEL = f"network.yagna.test-session={os.environ.get('YAGNA_TEST_SESSION', 'none')}"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI: {reason}")
    pytest.skip(reason)


def _load_assemble() -> ModuleType:
    spec = importlib.util.spec_from_file_location("render_assemble", RENDER / "assemble.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


assemble_mod = _load_assemble()


@pytest.fixture(scope="module")
def mandel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mandel.c compiled the way the image build compiles it."""
    if shutil.which("gcc") is None:
        _unavailable("gcc is needed to compile examples/render/mandel.c")
    out = tmp_path_factory.mktemp("mandel") / "mandel"
    proc = subprocess.run(
        ["gcc", "-O2", "-static", "-Wall", "-Wextra", "-Werror", "-o", str(out), str(RENDER / "mandel.c"), "-lm"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"gcc failed:\n{proc.stderr}"
    return out


def render(mandel: Path, out: Path, *args: str) -> tuple[bytes, str]:
    proc = subprocess.run([str(mandel), *args, "--out", str(out)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return out.read_bytes(), proc.stdout


def ppm_header(data: bytes) -> tuple[int, int, int, bytes]:
    magic, w, h, maxval, raster = data.split(maxsplit=4)
    assert magic == b"P6"
    return int(w), int(h), int(maxval), raster


# --- the renderer -------------------------------------------------------------


def test_frame_is_a_p6_of_the_asked_size_and_deterministic(mandel: Path, tmp_path: Path) -> None:
    a, line = render(mandel, tmp_path / "a.ppm", "7")
    b, _ = render(mandel, tmp_path / "b.ppm", "7")
    assert a == b
    assert a.startswith(b"P6\n160 120\n255\n")
    w, h, maxval, raster = ppm_header(a)
    assert (w, h, maxval, len(raster)) == (160, 120, 255, 160 * 120 * 3)
    assert line.startswith("frame 7/64 160x120 ") and "iters=" in line and line.count("\n") == 1
    assert len(set(raster)) > 50  # a palette, not a flat image

    small, line = render(mandel, tmp_path / "s.ppm", "2", "--frames", "5", "--width", "33", "--height", "17")
    assert small.startswith(b"P6\n33 17\n255\n") and len(small) == len(b"P6\n33 17\n255\n") + 33 * 17 * 3
    assert line.startswith("frame 2/5 33x17 ")
    # Its path and nothing else is written.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.ppm", "b.ppm", "s.ppm"]


def test_frames_differ_and_the_zoom_deepens(mandel: Path, tmp_path: Path) -> None:
    frames = {f: render(mandel, tmp_path / f"{f}.ppm", str(f), "--frames", "24") for f in (0, 1, 12, 23)}
    assert len({data for data, _ in frames.values()}) == 4
    widths = [float(line.split("width=")[1].split()[0]) for _, line in frames.values()]
    assert widths == sorted(widths, reverse=True) and widths[0] / widths[-1] > 1e5
    maxiters = [int(line.split("maxiter=")[1].split()[0]) for _, line in frames.values()]
    assert maxiters == sorted(maxiters) and maxiters[0] < maxiters[-1]


@pytest.mark.parametrize(
    "args",
    [[], ["64"], ["-1"], ["3", "--frames", "3"], ["x"], ["1", "--width", "0"], ["1", "--bogus"], ["1", "--out"]],
)
def test_bad_arguments_are_refused_and_write_nothing(mandel: Path, tmp_path: Path, args: list[str]) -> None:
    proc = subprocess.run([str(mandel), *args], capture_output=True, text=True, timeout=10, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr and not proc.stdout
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_output_fails(mandel: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(mandel), "1", "--out", str(tmp_path / "no" / "f.ppm")], capture_output=True, text=True, timeout=10
    )
    assert proc.returncode == 1 and "cannot write" in proc.stderr


# --- the job file -------------------------------------------------------------


def job() -> dict:  # type: ignore[type-arg]
    return tomllib.loads((RENDER / "job.toml").read_text())


def test_job_file_renders_frames_0_to_23() -> None:
    doc = job()
    assert doc["job"]["image"] == IMAGE
    assert doc["job"]["outputs"] == ["frame.ppm"]
    assert [t["params"]["frame"] for t in doc["task"]] == [str(i) for i in range(24)]
    command = doc["job"]["command"]
    assert command[0] == "mandel" and "{frame}" in command
    assert command[command.index("--frames") + 1] == "24"
    assert command[command.index("--out") + 1] == "/work/out/frame.ppm"


# --- the image ----------------------------------------------------------------


def test_image_renders_the_same_bytes_in_a_hardened_container(mandel: Path, tmp_path: Path) -> None:
    if shutil.which("docker") is None:
        _unavailable("the docker CLI is needed for the render image")
    ping = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, timeout=30)
    if ping.returncode != 0:
        _unavailable(f"no Docker engine: {ping.stderr.decode(errors='replace').strip()}")

    build = subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=120)
    assert build.returncode == 0, f"build-render-image.sh failed:\n{build.stdout}\n{build.stderr}"
    image_id = build.stdout.strip().splitlines()[-1]
    assert image_id.startswith("sha256:")
    again = subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and again.stdout.strip().splitlines()[-1] == image_id  # not rebuilt

    # The job's own command for frame 3, as a provider runs it (docs/exeunit.md).
    argv = [a.replace("{frame}", "3") for a in job()["job"]["command"]]
    script = f"mkdir -p /work/out && {' '.join(argv)} >&2 && cat /work/out/frame.ppm"
    proc = subprocess.run(
        [
            "docker", "run", "--rm", "--label", SESSION_LABEL,
            "--network", "none", "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--tmpfs", "/work:uid=1000,gid=1000,mode=0755", "--tmpfs", "/tmp",
            "--memory", "64m", "--pids-limit", "64",
            image_id, "sh", "-c", script,
        ],
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert proc.stderr.decode().startswith("frame 3/24 160x120 ")
    local, _ = render(mandel, tmp_path / "f.ppm", "3", "--frames", "24")
    assert proc.stdout == local


# --- the assembler ------------------------------------------------------------


def make_results(mandel: Path, root: Path, n: int, *, manifest: bool) -> Path:
    results = root / "results"
    tasks = []
    for f in range(n):
        task_id = f"task-{f:03d}"
        (results / task_id).mkdir(parents=True)
        render(mandel, results / task_id / "frame.ppm", str(f), "--frames", str(n), "--width", "48", "--height", "36")
        tasks.append({"id": task_id, "params": {"frame": str(f)}, "status": "done"})
    if manifest:
        import json

        # Listed out of order: the frame number orders them.
        (results / "manifest.json").write_text(json.dumps({"tasks": tasks[::-1]}))
    return results


@pytest.mark.parametrize("manifest", [True, False])
def test_assemble_makes_a_looping_gif_with_every_frame(mandel: Path, tmp_path: Path, manifest: bool) -> None:
    results = make_results(mandel, tmp_path, 5, manifest=manifest)
    out = tmp_path / "anim" / "anim.gif"
    assert assemble_mod.assemble(results, out, fps=10) == 5
    with Image.open(out) as gif:
        assert gif.format == "GIF" and gif.n_frames == 5 and gif.size == (48, 36)
        assert gif.info["loop"] == 0 and gif.info["duration"] == 100
        # Frame order follows the frame numbers: the first GIF frame is frame 0.
        first = Image.open(results / "task-000" / "frame.ppm").convert("RGB")
        gif.seek(0)
        diff = sum(abs(a - b) for a, b in zip(gif.convert("RGB").tobytes(), first.tobytes(), strict=True))
        assert diff / (48 * 36 * 3) < 16


def test_assemble_cli_prints_the_path_and_frame_count(mandel: Path, tmp_path: Path) -> None:
    results = make_results(mandel, tmp_path, 3, manifest=True)
    out = tmp_path / "a.gif"
    proc = subprocess.run(
        [sys.executable, str(RENDER / "assemble.py"), str(results), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{out} 3 frames"


@pytest.mark.parametrize("manifest", [True, False])
def test_assemble_refuses_a_missing_frame(mandel: Path, tmp_path: Path, manifest: bool) -> None:
    results = make_results(mandel, tmp_path, 4, manifest=manifest)
    shutil.rmtree(results / "task-002")
    out = tmp_path / "anim.gif"
    with pytest.raises(assemble_mod.AssembleError, match=r"(frame 2 missing|missing frame\(s\) 2)"):
        assemble_mod.assemble(results, out)
    assert not out.exists()
    proc = subprocess.run(
        [sys.executable, str(RENDER / "assemble.py"), str(results), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1 and "refused" in proc.stderr and "2" in proc.stderr and not out.exists()


def test_assemble_refuses_a_failed_task_and_an_invalid_ppm(mandel: Path, tmp_path: Path) -> None:
    import json

    results = make_results(mandel, tmp_path, 3, manifest=True)
    manifest = json.loads((results / "manifest.json").read_text())
    manifest["tasks"][0]["status"] = "failed"
    (results / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(assemble_mod.AssembleError, match="status is failed"):
        assemble_mod.assemble(results, tmp_path / "a.gif")
    manifest["tasks"][0]["status"] = "done"
    (results / "manifest.json").write_text(json.dumps(manifest))

    frame = results / "task-001" / "frame.ppm"
    good = frame.read_bytes()
    for bad, why in [(good[:-1], "bytes of pixels"), (b"P3\n1 1\n255\n0 0 0\n", "not a binary PPM"), (b"P6\n", "header")]:
        frame.write_bytes(bad)
        with pytest.raises(assemble_mod.AssembleError, match=f"task-001.*{why}"):
            assemble_mod.assemble(results, tmp_path / "a.gif")
    frame.write_bytes(good)
    assert assemble_mod.assemble(results, tmp_path / "a.gif") == 3
