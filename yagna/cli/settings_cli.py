"""Click glue for the settings table (:mod:`yagna.settings`) and for ``--data-dir`` anywhere.

:class:`SettingsCommand` is ``service run``'s command class: every option that
names a setting loses its click default and its click ``envvar`` (the table
holds both, so a flag not given is known as such and the environment and the
config file can fill it), and its help gains ``[default: ...; config: key;
env: YAGNA_...]``. :func:`given_flags` returns the options given on the
command line, by setting key.

:class:`YagnaGroup` is the root group: every command it hands out accepts
``--data-dir`` too, so ``yagna service run --data-dir X`` works as well as
``yagna --data-dir X service run`` (given after the command, it wins).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource


def _option_name(param: click.Parameter) -> str | None:
    return next((o for o in param.opts if o.startswith("--")), None)


class SettingsCommand(click.Command):
    """A command whose options are settings of the table (see the module docstring).

    The options are rewritten on first use (:meth:`prepare`, from :meth:`make_context`), so that
    importing the CLI does not import the table: every other command stays as lean as before."""

    _prepared = False

    def prepare(self) -> None:
        if self._prepared:
            return
        from yagna import settings

        for param in self.params:
            s = settings.BY_FLAG.get(_option_name(param) or "")
            if s is None or not isinstance(param, click.Option):
                continue
            param.default = None
            param.envvar = None
            param.show_default = False
            param.help = (f"{param.help or s.help} [default: {s.describe_default()}; "
                          f"config: {s.key}; env: {s.env}]")
        self._prepared = True

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        self.prepare()
        return super().make_context(info_name, args, parent, **extra)


def given_flags(ctx: click.Context, flags: dict[str, Any]) -> dict[str, object]:
    """The settings given on the command line (not defaulted), by key."""
    from yagna import settings

    out: dict[str, object] = {}
    for param in ctx.command.params:
        s = settings.BY_FLAG.get(_option_name(param) or "")
        if s is None or param.name not in flags:
            continue
        if ctx.get_parameter_source(param.name) is ParameterSource.COMMANDLINE:
            value = flags[param.name]
            out[s.key] = list(value) if isinstance(value, tuple) else value
    return out


DATA_DIR_HELP = "The node's data directory (also accepted before the command) [env YAGNA_DATA_DIR]."


def _set_data_dir(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    if value is not None:
        obj = ctx.find_object(object)  # the root group's Ctx
        if obj is not None and hasattr(obj, "data_dir"):
            obj.data_dir = value


def _add_data_dir(cmd: click.Command) -> None:
    if not any(p.name == "data_dir" or "--data-dir" in getattr(p, "opts", ()) for p in cmd.params):
        cmd.params.append(click.Option(["--data-dir"], type=click.Path(path_type=Path), expose_value=False,
                                       callback=_set_data_dir, help=DATA_DIR_HELP))
    if isinstance(cmd, click.Group):
        for sub in cmd.commands.values():
            _add_data_dir(sub)


class YagnaGroup(click.Group):
    """The root group: its commands (and theirs) accept ``--data-dir`` after their name too."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is not None:
            _add_data_dir(cmd)
        return cmd
