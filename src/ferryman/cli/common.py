"""Helpers shared by subcommands: endpoint parsing, the --sync option."""

from __future__ import annotations

import argparse
import ipaddress

from ferryman.errors import UsageError


def parse_endpoint(text: str) -> tuple[str, int]:
    """``IP:PORT`` or ``[IPv6]:PORT`` -> (ip, port)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise UsageError(f"bad address {text!r}", hint="write it as IP:PORT, e.g. 10.0.0.2:7070")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError as exc:
        raise UsageError(f"bad IP address {host!r}", hint="give the agent's IP address") from exc
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UsageError(f"bad port {port_text!r}", hint="a port is a number from 1 to 65535")
    return host, int(port_text)


def add_sync_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sync", action="append", default=[], metavar="PATH",
                   help="a path you copy to the destination yourself (or that both nodes "
                        "share): the pre-flight check does not compare files under it")


def synced_paths(args: argparse.Namespace) -> tuple[str, ...]:
    """The --sync paths, each absolute."""
    for path in args.sync:
        if not path.startswith("/"):
            raise UsageError(f"--sync {path}: not an absolute path", hint="give /full/paths")
    return tuple(args.sync)
