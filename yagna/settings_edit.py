"""Changing the config file in place: ``yagna config set/unset`` and ``yagna provider init``.

tomllib only reads, so writes go through tomlkit, which keeps the file's
comments, order and layout (docs/decisions.md). Every change is checked by
the table of :mod:`yagna.settings` before anything is written, and the new
text must pass the same checks as a file the daemon reads; it is written to a
temporary file beside the old one and renamed over it (never half a file).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from yagna import settings
from yagna.settings import SettingError


def _to_toml(value: object) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _load(path: Path) -> Any:
    import tomlkit
    import tomlkit.exceptions

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    except OSError as exc:
        raise SettingError(f"cannot read config file {path}: {exc.strerror}") from None
    settings.parse_text(text, path)  # refuse to edit a file the daemon would refuse
    try:
        return tomlkit.parse(text)
    except tomlkit.exceptions.ParseError as exc:  # pragma: no cover - tomllib accepted it
        raise SettingError(f"config file {path} is not valid TOML: {exc}") from None


def _table(doc: Any, section: str, *, create: bool) -> Any:
    import tomlkit

    table = doc
    parts = section.split(".")
    for i, part in enumerate(parts):
        if part not in table:
            if not create:
                return None
            table[part] = tomlkit.table(is_super_table=i < len(parts) - 1)
        table = table[part]
    return table


def render(path: Path, changes: Mapping[str, object | None]) -> str:
    """The file's text with ``changes`` applied (key -> value; None removes the key), checked."""
    import tomlkit

    doc = _load(path)
    for key, value in changes.items():
        s = settings.setting(key)
        if value is None:
            table = _table(doc, s.section, create=False)
            if table is not None and s.name in table:
                del table[s.name]
            continue
        try:
            checked = s.kind.check(_to_toml(value))
        except ValueError as exc:
            raise SettingError(f"{key} {exc}") from None
        _table(doc, s.section, create=True)[s.name] = checked
    text = tomlkit.dumps(doc)
    settings.parse_text(text, path)
    return text


def write(path: Path, changes: Mapping[str, object | None]) -> str:
    """Apply ``changes`` to the file at ``path`` (created with its directory if missing); the new text."""
    text = render(path, changes)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        _keep_owner_and_mode(path, Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return text


def _keep_owner_and_mode(path: Path, tmp: Path) -> None:
    """The new file gets the old one's mode (0644 when new); root writing into another user's
    data dir (``sudo yagna --data-dir /var/lib/yagna ...``) hands the file to the dir's owner."""
    try:
        st = path.stat()
        mode, owner = st.st_mode & 0o7777, (st.st_uid, st.st_gid)
    except FileNotFoundError:
        parent = path.parent.stat()
        mode, owner = 0o644, (parent.st_uid, parent.st_gid)
    os.chmod(tmp, mode)
    if os.geteuid() == 0 and owner != (0, 0):
        os.chown(tmp, *owner)
