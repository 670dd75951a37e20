"""``yagna config show|get|set|unset``: the node's settings and the config file.

Values shown are those ``yagna service run`` would use without flags:
environment (``YAGNA_*``), then the config file, then the defaults
(:mod:`yagna.settings`). ``set`` and ``unset`` edit the file in place,
keeping its comments (:mod:`yagna.settings_edit`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from yagna.cli.output import emit

_config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), envvar="YAGNA_CONFIG",
    help="The config file [env YAGNA_CONFIG; default <data dir>/config.toml, or its older name yagna.toml].")


def _data_dir(obj: Any) -> Path:
    from yagna.core.paths import client_data_dir

    return Path(obj.data_dir) if obj.data_dir is not None else client_data_dir()


def _file(obj: Any, config_path: Path | None) -> Path:
    from yagna import settings

    return settings.config_path(_data_dir(obj), config_path)[0]


def _json_value(value: object) -> object:
    return str(value) if isinstance(value, Path) else value


@click.group("config")
def config() -> None:
    """The node's settings: every `service run` flag, its config-file key and its YAGNA_* variable."""


@config.command("show")
@click.option("--origin", is_flag=True, help="Also say where each value comes from (env, file, default).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_config_option
@click.pass_obj
def config_show(obj: Any, origin: bool, as_json: bool, config_path: Path | None) -> None:
    """Every setting as `yagna service run` would use it without flags."""
    from yagna import settings

    r = settings.load(_data_dir(obj), explicit=config_path)
    if as_json:
        if origin:
            data: Any = {k: {"value": _json_value(v), "origin": r.origins[k]} for k, v in r.values.items()}
        else:
            data = {k: _json_value(v) for k, v in r.values.items()}
        emit({"file": str(r.file) if r.file else None, "settings": data}, True)
        return
    path, _ = settings.config_path(_data_dir(obj), config_path)
    lines = [f"# config file: {path}{'' if r.file else ' (none yet)'}"]
    width = max(len(k) for k in r.values)
    for s in settings.SETTINGS:
        value = r.values[s.key]
        shown = s.describe_default() if r.origins[s.key] == "default" and value is None else s.kind.show(value)
        where = r.origins[s.key]
        if where == "env" or where == "env+file":
            where += f" {s.env}"
        lines.append(f"{s.key:{width}}  {shown}" + (f"  ({where})" if origin else ""))
    emit(None, False, "\n".join(lines))


@config.command("get")
@click.argument("key")
@click.option("--origin", is_flag=True, help="Also say where the value comes from.")
@click.option("--json", "as_json", is_flag=True, help="Print the value as JSON.")
@_config_option
@click.pass_obj
def config_get(obj: Any, key: str, origin: bool, as_json: bool, config_path: Path | None) -> None:
    """One setting's value, e.g. `yagna config get net.max_peers`."""
    from yagna import settings

    s = settings.setting(key)
    r = settings.load(_data_dir(obj), explicit=config_path)
    value = r.values[key]
    if as_json:
        data: Any = {"value": _json_value(value), "origin": r.origins[key]} if origin else _json_value(value)
        emit(data, True)
        return
    text = s.kind.show(value) if value is not None else s.describe_default()
    click.echo(f"{text}  ({r.origins[key]})" if origin else text)


@config.command("set")
@click.argument("key")
@click.argument("value")
@_config_option
@click.pass_obj
def config_set(obj: Any, key: str, value: str, config_path: Path | None) -> None:
    """Set KEY to VALUE in the config file (checked; comments kept). Lists: a,b or ["a", "b"]."""
    from yagna import settings, settings_edit

    s = settings.setting(key)
    try:
        parsed = s.kind.parse(value)
    except ValueError as exc:
        raise settings.SettingError(f"{key} {exc}") from None
    path = _file(obj, config_path)
    settings_edit.write(path, {key: parsed})
    click.echo(f"{key} = {s.kind.show(parsed)}  (in {path})")
    _warn_shadowed(s.env, key)


@config.command("unset")
@click.argument("key")
@_config_option
@click.pass_obj
def config_unset(obj: Any, key: str, config_path: Path | None) -> None:
    """Remove KEY from the config file (its default applies again)."""
    from yagna import settings, settings_edit

    s = settings.setting(key)
    path = _file(obj, config_path)
    if path.exists():
        settings_edit.write(path, {key: None})
    click.echo(f"{key} unset: {s.describe_default()} (default)")
    _warn_shadowed(s.env, key)


def _warn_shadowed(env: str, key: str) -> None:
    if os.environ.get(env, "").strip():
        click.echo(f"note: {env} is set in this environment and wins over the file's {key}", err=True)

