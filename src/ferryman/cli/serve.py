"""``ferryman serve``: run the node agent, or install its systemd unit.

Options come from the command line and from ``--config FILE`` (TOML, cli/serveconfig.py); a
flag given on the command line wins over the file, the file over the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from ferryman.agent.limits import Limits
from ferryman.cli import serveconfig
from ferryman.cli.common import parse_endpoint
from ferryman.errors import UsageError
from ferryman.host.addresses import MovableNetwork, parse_movable
from ferryman.migration.prefault import SETTINGS
from ferryman.paths import DEFAULT_STATE_DIR

if TYPE_CHECKING:
    from ferryman.agent.config import AgentConfig

T = TypeVar("T")
DEFAULT_RUNC_ROOT = Path("/run/runc")
DEFAULT_CONFIG = Path("/etc/ferryman/agent.toml")
DEFAULT_UNIT = Path("/etc/systemd/system/ferryman.service")
UNIT_EXEC = "/usr/local/bin/ferryman"  # the shipped unit's command, replaced when installed


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the ferryman agent on this node",
                       description="Run the node agent: receives migrations over mutual TLS. "
                                   "--listen, --pki and --name are needed, on the command "
                                   "line or in the --config file.")
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="TOML file with these options (keys: the option names without "
                        "dashes, e.g. state-dir); flags given here override it")
    p.add_argument("--install-unit", nargs="?", type=Path, const=DEFAULT_UNIT, metavar="PATH",
                   help=f"write the systemd unit that runs this ferryman with --config "
                        f"(default {DEFAULT_CONFIG}) to PATH (default {DEFAULT_UNIT}), "
                        "then exit")
    p.add_argument("--listen", metavar="IP:PORT", help="address to listen on")
    p.add_argument("--pki", type=Path, metavar="DIR", help="cluster PKI directory")
    p.add_argument("--name", help="this node's name (its certificate)")
    p.add_argument("--state-dir", type=Path,
                   help=f"where migrations keep images and logs (default {DEFAULT_STATE_DIR})")
    p.add_argument("--criu", help="criu binary (default: from PATH)")
    p.add_argument("--runc", help="runc binary (default: from PATH)")
    p.add_argument("--runc-root", type=Path, metavar="DIR",
                   help="runc's state root for containers restored here (default /run/runc)")
    p.add_argument("--bundle-root", type=Path, metavar="DIR",
                   help="where containers moved here keep their bundles, one directory per "
                        "container id (default STATE_DIR/bundles)")
    p.add_argument("--movable-addresses", metavar="CIDR@DEV[,CIDR@DEV]",
                   help="service addresses peers may move onto this node (migrate "
                        "--move-address): inside CIDR, no wider, on device DEV "
                        "(default: none)")
    p.add_argument("--check-roots", metavar="DIR[,DIR]",
                   help="pre-flight checks may ask about any file under these directories "
                        "(default: only files any local user may read)")
    p.add_argument("--max-migrations", type=int, metavar="N",
                   help="migrations received at once; more are refused as busy "
                        f"(default {Limits().migrations})")
    p.add_argument("--no-launcher", dest="launcher", action="store_false", default=None,
                   help="no launcher on STATE_DIR/launcher.sock: this node's 'ferryman "
                        "migrate' and 'check' start cold (default: they start warm)")
    p.add_argument("--prefault", choices=SETTINGS, default=None,
                   help="make the memory an arriving workload needs resident before its "
                        "freeze, so that its downtime does not include the hypervisor "
                        "giving it back: auto (where this node's free memory goes back to "
                        "its hypervisor, a virtio balloon reporting free pages, and the "
                        "workload needs 1 GiB or more), on, off (default: auto)")
    p.add_argument("--test-hide-feature", action="append", default=[], metavar="FEATURE",
                   help=argparse.SUPPRESS)  # test-only: pretend CRIU lacks FEATURE
    p.add_argument("--test-pause-after-restore", type=float, default=0.0,
                   help=argparse.SUPPRESS)  # test-only: time to break the source at RESTORED
    p.set_defaults(run=run)


def _required(flag: T | None, from_file: T | None, option: str) -> T:
    if flag is not None:
        return flag
    if from_file is not None:
        return from_file
    raise UsageError(f"serve needs --{option}",
                     hint=f"give --{option}, or '{option}' in the --config file")


@dataclass(frozen=True, slots=True)
class Settings:
    """``serve``'s options once flags, the config file and the defaults are merged."""

    name: str
    host: str
    port: int
    pki: Path
    state_dir: Path
    criu: str
    runc: str
    runc_root: Path
    bundle_root: Path | None
    movable: tuple[MovableNetwork, ...]
    check_roots: tuple[Path, ...]
    max_migrations: int
    launcher: bool = True
    prefault: str = "auto"


def merge(args: argparse.Namespace, file: serveconfig.FileOptions) -> Settings:
    """These flags over that file's options over the defaults (pure: paths stay unresolved)."""
    if args.max_migrations is not None and args.max_migrations < 1:
        raise UsageError(f"bad --max-migrations {args.max_migrations}",
                         hint="an agent receives at least one migration at a time")
    flag_listen = parse_endpoint(args.listen) if args.listen is not None else None
    host, port = _required(flag_listen, file.listen, "listen")
    if args.check_roots is not None:
        check_roots = tuple(Path(d) for d in args.check_roots.split(",") if d)
    else:
        check_roots = file.check_roots or ()
    if args.movable_addresses is not None:
        movable = parse_movable(args.movable_addresses) if args.movable_addresses else ()
    else:
        movable = file.movable_addresses or ()
    return Settings(
        name=_required(args.name, file.name, "name"), host=host, port=port,
        pki=_required(args.pki, file.pki, "pki"),
        state_dir=args.state_dir or file.state_dir or Path(DEFAULT_STATE_DIR),
        criu=args.criu or file.criu or "criu", runc=args.runc or file.runc or "runc",
        runc_root=args.runc_root or file.runc_root or DEFAULT_RUNC_ROOT,
        bundle_root=args.bundle_root or file.bundle_root, movable=movable,
        check_roots=check_roots,
        max_migrations=args.max_migrations or file.max_migrations or Limits().migrations,
        launcher=next((v for v in (args.launcher, file.launcher) if v is not None), True),
        prefault=args.prefault or file.prefault or "auto")


def agent_config(args: argparse.Namespace, s: Settings) -> AgentConfig:
    """The agent's configuration: ``s`` with its paths resolved and the node's credentials."""
    from ferryman.agent.config import AgentConfig
    from ferryman.pki import load_node

    return AgentConfig(name=s.name, listen_host=s.host, listen_port=s.port,
                       creds=load_node(s.pki.resolve(), s.name),
                       state_dir=s.state_dir.resolve(), criu_bin=s.criu, runc_bin=s.runc,
                       runc_root=s.runc_root.resolve(),
                       bundle_root=s.bundle_root.resolve() if s.bundle_root else None,
                       movable=s.movable, check_roots=tuple(d.resolve() for d in s.check_roots),
                       limits=Limits(migrations=s.max_migrations), launcher=s.launcher,
                       prefault=s.prefault,
                       hidden_features=frozenset(args.test_hide_feature),
                       test_pause_after_restore=args.test_pause_after_restore)


def ferryman_command(argv0: str, python: str) -> list[str]:
    """How a unit runs this ferryman: its ``ferryman`` script, else ``python -m ferryman``."""
    script = Path(argv0)
    if script.name == "ferryman" and script.is_file():
        return [str(script.resolve())]
    return [python, "-m", "ferryman"]


def unit_text(template: str, command: list[str], config: Path) -> str:
    """The shipped unit with ExecStart running ``command serve --config config``."""
    exec_line = f"ExecStart={UNIT_EXEC} serve --config {DEFAULT_CONFIG}"
    if exec_line not in template:
        raise AssertionError("the shipped unit lost its ExecStart line")
    return template.replace(exec_line, "ExecStart=" + shlex.join(
        [*command, "serve", "--config", str(config)]))


def install_unit(args: argparse.Namespace) -> int:
    template = resources.files("ferryman").joinpath("data/ferryman.service").read_text()
    config = (args.config or DEFAULT_CONFIG).absolute()
    text = unit_text(template, ferryman_command(sys.argv[0], sys.executable), config)
    target: Path = args.install_unit
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror or exc}",
                         hint="run as root, or give --install-unit a writable PATH") from exc
    print(f"wrote {target} (runs the agent with --config {config})")
    if not config.exists():
        print(f"write {config} next (README, 'Running the agent'), then:")
    print("  systemctl daemon-reload && systemctl enable --now ferryman")
    return 0


def run(args: argparse.Namespace) -> int:
    import logging
    import os

    from ferryman.agent.server import Agent
    from ferryman.host.sdnotify import Notifier

    if args.install_unit is not None:
        return install_unit(args)
    if args.verbose == 0:
        logging.getLogger().setLevel(logging.INFO)  # an agent logs what it does
    file = serveconfig.load(args.config) if args.config else serveconfig.FileOptions()
    config = agent_config(args, merge(args, file))
    asyncio.run(Agent(config, Notifier.take_from(os.environ)).serve())
    return 0
