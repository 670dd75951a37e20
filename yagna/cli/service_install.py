"""``yagna service install``: run the node unattended, as a systemd service.

The unit (:func:`render_unit`) runs ``yagna service run --log-format json`` as a
dedicated system user (``yagna`` by default, made with ``useradd --system``),
with ``SupplementaryGroups=docker`` for the Docker socket, its data dir in
``/var/lib/yagna`` (``StateDirectory=``, mode 0700, also
``YAGNA_DATA_DIR``), logs to the journal, and ``Restart=on-failure``. The
node's settings live in that data dir's ``config.toml`` (``yagna --data-dir
/var/lib/yagna provider init``). ``--print`` prints the unit and changes
nothing; this command never calls systemctl itself, it prints what to run.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import click

from yagna import __version__
from yagna.core.errors import YagnaError

UNIT_PATH = Path("/etc/systemd/system/yagna.service")
DEFAULT_USER = "yagna"
_SAFE = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


def _quote(arg: str) -> str:
    if _SAFE.fullmatch(arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def yagna_command() -> list[str]:
    """How the service starts this yagna: the ``yagna`` script beside this interpreter, else ``python -m yagna``."""
    script = Path(sys.executable).parent / "yagna"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script.absolute())]
    return [str(Path(sys.executable).absolute()), "-m", "yagna"]


def render_unit(*, command: list[str], user: str, data_dir: Path) -> str:
    """The systemd unit's text."""
    state = []
    if data_dir.parent == Path("/var/lib"):  # systemd makes it, owned by the user, and keeps it so
        state = [f"StateDirectory={data_dir.name}", "StateDirectoryMode=0700"]
    exec_start = " ".join(_quote(a) for a in [*command, "--data-dir", str(data_dir), "service", "run",
                                                  "--log-format", "json"])
    return "\n".join([
        f"# {UNIT_PATH}: written by `yagna service install` (yagna {__version__}).",
        "# Settings: <data dir>/config.toml (yagna --data-dir DIR config show --origin); logs: journalctl -u yagna",
        "[Unit]",
        "Description=yagna compute network node",
        "Wants=network-online.target docker.service",
        "After=network-online.target docker.service",
        "",
        "[Service]",
        "Type=simple",
        f"User={user}",
        f"Group={user}",
        "SupplementaryGroups=docker",
        f"Environment={_quote(f'YAGNA_DATA_DIR={data_dir}')}",
        "Environment=PYTHONUNBUFFERED=1",
        *state,
        f"ExecStart={exec_start}",
        "Restart=on-failure",
        "RestartSec=5",
        "TimeoutStopSec=30",
        "StandardOutput=journal",
        "StandardError=journal",
        "NoNewPrivileges=true",
        "ProtectSystem=full",
        "LimitNOFILE=65536",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ])


def _unreadable_by_others(path: Path) -> Path | None:
    """The first directory above ``path`` that other users cannot enter (the service user would fail there)."""
    for parent in path.absolute().parents:
        try:
            if not parent.stat().st_mode & 0o001:
                return parent
        except OSError:
            return parent
    return None


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)


@click.command("install")
@click.option("--print", "print_only", is_flag=True, help="Print the unit; change nothing.")
@click.option("--user", default=DEFAULT_USER, show_default=True, help="The system user the node runs as.")
@click.pass_obj
def service_install(obj: Any, print_only: bool, user: str) -> None:
    """Run the node unattended: a systemd unit (/etc/systemd/system/yagna.service) and its system user.

    The data dir is --data-dir (before or after the command) or YAGNA_DATA_DIR, else /var/lib/yagna."""
    from yagna.core.paths import SYSTEM_DATA_DIR

    if not _USER.fullmatch(user):
        raise YagnaError(f"--user {user!r} is not a valid user name (a-z, 0-9, '_', '-'; at most 32)")
    data_dir = Path(obj.data_dir).absolute() if obj.data_dir is not None else SYSTEM_DATA_DIR
    command = yagna_command()
    hidden = _unreadable_by_others(Path(command[0]))
    if hidden is not None:
        click.echo(f"warning: {command[0]} is under {hidden}, which user {user} cannot enter; install yagna "
                   "where every user can run it (e.g. a venv in /opt/yagna)", err=True)
    unit = render_unit(command=command, user=user, data_dir=data_dir)
    if print_only:
        click.echo(unit, nl=False)
        return
    _install(unit, user, data_dir)


def _install(unit: str, user: str, data_dir: Path) -> None:
    import grp
    import pwd
    import shutil
    import subprocess

    if os.geteuid() != 0:
        raise YagnaError("installing a system service needs root: sudo yagna service install "
                         "(or --print to see the unit)")
    try:
        grp.getgrnam("docker")
    except KeyError:
        raise YagnaError("there is no group docker (the node reaches Docker's socket through it): install Docker "
                         "Engine first (Debian: sudo apt-get install docker.io)") from None
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        cmd = [useradd, "--system", "--user-group", "--home-dir", str(data_dir), "--no-create-home",
               "--shell", "/usr/sbin/nologin", user]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise YagnaError(f"{' '.join(cmd)} failed: {done.stderr.strip() or done.returncode}") from None
        click.echo(f"created system user {user}")
        pw = pwd.getpwnam(user)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    _chown_tree(data_dir, pw.pw_uid, pw.pw_gid)
    os.chmod(data_dir, 0o700)
    tmp = UNIT_PATH.with_suffix(".tmp")
    tmp.write_text(unit)
    os.chmod(tmp, 0o644)
    os.replace(tmp, UNIT_PATH)
    click.echo(f"wrote {UNIT_PATH} (runs as {user}, data dir {data_dir})")
    click.echo("next:")
    click.echo(f"  sudo yagna --data-dir {data_dir} provider init      # what to sell, prices, payment (config.toml)")
    click.echo("  sudo systemctl daemon-reload && sudo systemctl enable --now yagna")
    click.echo("  journalctl -u yagna -f                              # its logs; `sudo yagna provider status`")
