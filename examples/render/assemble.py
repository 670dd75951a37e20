"""Assemble the frames a render batch downloaded into an animated GIF.

    python examples/render/assemble.py RESULTS_DIR --out anim.gif [--fps 12]

RESULTS_DIR holds one folder per task, ``RESULTS_DIR/<task id>/frame.ppm``
(what ``yagna batch run examples/render/job.toml`` downloads). The frame order:

- with ``RESULTS_DIR/manifest.json`` (a list of tasks, or ``{"tasks": [...]}``,
  each with ``id``, ``params`` holding ``frame``, and ``status``): by
  ``params.frame``; the frames must be 0..N-1 (or any run of consecutive
  numbers) with none missing, none failed;
- without it: the task folders in natural order (``task-2`` before
  ``task-10``); when every folder name ends in a number, those numbers must be
  consecutive.

Every frame must be a valid binary PPM (P6, maxval <= 255) of the same size;
anything else is refused with a message naming the task and the file, and no
GIF is written. The GIF loops forever. Pillow merges a frame identical to the
one before it into that one (their durations add up).

Importable: ``assemble(results_dir, out, fps=12) -> int`` (frames assembled);
it raises :class:`AssembleError` on a missing or invalid frame.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

FRAME_FILE = "frame.ppm"
MANIFEST = "manifest.json"
# A task whose status is one of these produced no usable frame.
FAILED_STATUSES = {"failed", "error", "timeout", "timed_out", "rejected", "cancelled", "canceled", "pending", "running"}
MAX_SIDE = 16384


class AssembleError(Exception):
    """A frame is missing or invalid, or the results folder is unusable."""


@dataclass(frozen=True)
class Frame:
    task_id: str
    number: int | None
    path: Path


def read_ppm(path: Path) -> Image.Image:
    """A binary PPM (P6, maxval 1..255) as an RGB image; strict about the format."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise AssembleError(f"{path}: missing") from None
    except OSError as exc:
        raise AssembleError(f"{path}: cannot read: {exc.strerror}") from None
    if data[:2] != b"P6":
        raise AssembleError(f"{path}: not a binary PPM (P6) file")
    fields: list[int] = []
    pos = 2
    while len(fields) < 3:
        # whitespace and comments between header fields
        while pos < len(data) and (data[pos : pos + 1].isspace() or data[pos : pos + 1] == b"#"):
            if data[pos : pos + 1] == b"#":
                end = data.find(b"\n", pos)
                pos = len(data) if end < 0 else end + 1
            else:
                pos += 1
        start = pos
        while pos < len(data) and data[pos : pos + 1].isdigit():
            pos += 1
        if start == pos or pos - start > 9:
            raise AssembleError(f"{path}: not a valid PPM: bad or truncated header")
        fields.append(int(data[start:pos]))
    if pos >= len(data) or not data[pos : pos + 1].isspace():
        raise AssembleError(f"{path}: not a valid PPM: bad or truncated header")
    pos += 1  # exactly one whitespace byte before the raster
    width, height, maxval = fields
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise AssembleError(f"{path}: not a valid PPM: size {width}x{height}")
    if not 0 < maxval <= 255:
        raise AssembleError(f"{path}: unsupported PPM maxval {maxval} (1..255 expected)")
    raster = data[pos:]
    want = width * height * 3
    if len(raster) != want:
        raise AssembleError(f"{path}: not a valid PPM: {len(raster)} bytes of pixels, {width}x{height} needs {want}")
    image = Image.frombytes("RGB", (width, height), raster)
    if maxval != 255:
        image = image.point(lambda v: min(255, (v * 255 + maxval // 2) // maxval))
    return image


def _natural_key(name: str) -> list[tuple[int, int | str]]:
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name) if part]


def _check_consecutive(frames: list[Frame], source: str) -> None:
    numbers = [f.number for f in frames if f.number is not None]
    if len(numbers) != len(frames):
        return
    seen: dict[int, str] = {}
    for f in frames:
        assert f.number is not None
        if f.number in seen:
            raise AssembleError(f"frame {f.number} appears twice ({source}: tasks {seen[f.number]} and {f.task_id})")
        seen[f.number] = f.task_id
    missing = sorted(set(range(min(numbers), max(numbers) + 1)) - set(numbers))
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise AssembleError(f"missing frame(s) {shown} ({source})")


def _from_manifest(results_dir: Path, manifest: Path) -> list[Frame]:
    try:
        doc = json.loads(manifest.read_text())
    except (OSError, ValueError) as exc:
        raise AssembleError(f"{manifest}: not readable JSON: {exc}") from None
    tasks = doc.get("tasks") if isinstance(doc, dict) else doc
    if not isinstance(tasks, list) or not tasks:
        raise AssembleError(f"{manifest}: no tasks (a list, or an object with a 'tasks' list, expected)")
    frames = []
    for i, task in enumerate(tasks):
        if not isinstance(task, dict) or not isinstance(task.get("id"), str | int):
            raise AssembleError(f"{manifest}: task #{i} has no id")
        task_id = str(task["id"])
        params = task.get("params") or {}
        try:
            number = int(params["frame"])
        except (KeyError, TypeError, ValueError):
            raise AssembleError(f"{manifest}: task {task_id} has no integer params.frame") from None
        status = str(task.get("status", "")).lower()
        if status in FAILED_STATUSES:
            raise AssembleError(f"frame {number} missing: task {task_id} status is {task['status']}")
        folder = (results_dir / task_id).resolve()
        if not folder.is_relative_to(results_dir.resolve()):
            raise AssembleError(f"{manifest}: task id {task_id!r} points outside {results_dir}")
        frames.append(Frame(task_id, number, folder / FRAME_FILE))
    _check_consecutive(frames, str(manifest))
    return sorted(frames, key=lambda f: f.number or 0)


def _from_folders(results_dir: Path) -> list[Frame]:
    folders = sorted((p for p in results_dir.iterdir() if p.is_dir()), key=lambda p: _natural_key(p.name))
    if not folders:
        raise AssembleError(f"{results_dir}: no task folders (expected <task id>/{FRAME_FILE})")
    frames = []
    for folder in folders:
        m = re.search(r"(\d+)$", folder.name)
        frames.append(Frame(folder.name, int(m.group(1)) if m else None, folder / FRAME_FILE))
    _check_consecutive(frames, f"task folders in {results_dir}")
    return frames


def find_frames(results_dir: Path) -> list[Frame]:
    """The frames of ``results_dir`` in animation order (not yet read)."""
    if not results_dir.is_dir():
        raise AssembleError(f"{results_dir}: not a directory")
    manifest = results_dir / MANIFEST
    return _from_manifest(results_dir, manifest) if manifest.exists() else _from_folders(results_dir)


def assemble(results_dir: Path, out: Path, fps: int = 12) -> int:
    """Write the animated GIF ``out`` from the frames in ``results_dir``; the number of frames."""
    if not 1 <= fps <= 100:
        raise AssembleError(f"fps must be in 1..100, got {fps}")
    frames = find_frames(Path(results_dir))
    images = []
    for frame in frames:
        if not frame.path.is_file():
            label = f"frame {frame.number}" if frame.number is not None else "a frame"
            raise AssembleError(f"{label} missing: task {frame.task_id} has no {frame.path}")
        try:
            images.append(read_ppm(frame.path))
        except AssembleError as exc:
            raise AssembleError(f"task {frame.task_id}: {exc}") from None
    size = images[0].size
    for frame, image in zip(frames, images, strict=True):
        if image.size != size:
            raise AssembleError(
                f"task {frame.task_id}: {frame.path} is {image.size[0]}x{image.size[1]}, the first frame {size[0]}x{size[1]}"
            )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    paletted = [im.quantize(colors=256, method=Image.Quantize.MEDIANCUT) for im in images]
    paletted[0].save(
        tmp,
        format="GIF",
        save_all=True,
        append_images=paletted[1:],
        duration=max(10, round(1000 / fps)),
        loop=0,
        disposal=1,
    )
    tmp.replace(out)
    return len(images)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Assemble a render batch's frames into an animated GIF.")
    parser.add_argument("results_dir", type=Path, metavar="RESULTS_DIR", help="the batch's results folder")
    parser.add_argument("--out", type=Path, required=True, help="the GIF to write")
    parser.add_argument("--fps", type=int, default=12, help="frames per second (default 12)")
    args = parser.parse_args(argv)
    try:
        n = assemble(args.results_dir, args.out, args.fps)
    except AssembleError as exc:
        print(f"assemble: refused: {exc}", file=sys.stderr)
        return 1
    print(f"{args.out} {n} frames")
    return 0


if __name__ == "__main__":
    sys.exit(main())
