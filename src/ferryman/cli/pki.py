"""``ferryman pki``: create the cluster CA and issue node certificates.

    ferryman pki init DIR [--force]
    ferryman pki issue NAME --pki DIR [--ip IP]... [--dns NAME]...
"""

from __future__ import annotations

import argparse
import ipaddress
from pathlib import Path

from ferryman import pki
from ferryman.errors import UsageError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "pki",
        help="create the cluster CA and node certificates",
        description="Manage the cluster PKI: one CA, one certificate per node (mutual TLS).",
    )
    sub = parser.add_subparsers(dest="pki_command", metavar="ACTION", required=True)

    init = sub.add_parser(
        "init",
        help="create the cluster CA in DIR",
        description="Create DIR/ca.pem and DIR/ca.key (DIR mode 0700, key mode 0600).",
    )
    init.add_argument("directory", metavar="DIR", type=Path, help="PKI directory")
    init.add_argument("--force", action="store_true",
                      help="replace an existing CA (every node must then be reissued)")
    init.set_defaults(run=run_init)

    issue = sub.add_parser(
        "issue",
        help="issue the certificate of node NAME",
        description=(
            "Write DIR/NAME.pem and DIR/NAME.key, signed by the CA in DIR. Peers dial nodes by "
            "IP and check it against the certificate: list every IP the node is reached at "
            "(127.0.0.1 is always included). Copy ca.pem, NAME.pem and NAME.key to the node."
        ),
    )
    issue.add_argument("name", metavar="NAME", help="node name ([A-Za-z0-9_.-], up to 64)")
    issue.add_argument("--pki", dest="directory", metavar="DIR", type=Path, required=True,
                       help="PKI directory holding the CA")
    issue.add_argument("--ip", dest="ips", metavar="IP", action="append", default=[],
                       help="an IP address of the node (repeatable)")
    issue.add_argument("--dns", metavar="NAME", action="append", default=[],
                       help="an extra DNS name of the node (repeatable)")
    issue.set_defaults(run=run_issue)


def parse_ips(texts: list[str]) -> list[pki.IpAddress]:
    ips: list[pki.IpAddress] = []
    for text in texts:
        try:
            ips.append(ipaddress.ip_address(text))
        except ValueError as exc:
            raise UsageError(
                f"--ip {text!r} is not an IP address", hint="give one IPv4 or IPv6 address per --ip"
            ) from exc
    return ips


def run_init(args: argparse.Namespace) -> int:
    files = pki.init_ca(args.directory, clock=pki.system_clock, force=args.force)
    print(f"wrote {files.cert} (CA certificate, valid until {files.not_after:%Y-%m-%d})")
    print(f"wrote {files.key} (CA private key, keep it here)")
    return 0


def run_issue(args: argparse.Namespace) -> int:
    ips = parse_ips(args.ips)
    files = pki.issue_node(args.directory, args.name, ips, dns=args.dns, clock=pki.system_clock)
    verb = "replaced" if files.replaced else "wrote"
    sans = ", ".join([*(f"IP:{ip}" for ip in files.ips), *(f"DNS:{d}" for d in files.dns)])
    print(f"{verb} {files.cert} (node {files.name}, valid until {files.not_after:%Y-%m-%d})")
    print(f"  names: {sans}")
    print(f"{verb} {files.key} (private key)")
    print(f"copy {files.cert.parent / 'ca.pem'}, {files.cert.name} and {files.key.name} "
          f"to node {files.name}")
    return 0
