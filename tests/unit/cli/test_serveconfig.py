"""``serve --config``: the TOML file's keys and values, and flags over file over defaults
(pure: text in, options out; no file is read, no certificate loaded)."""

from __future__ import annotations

import argparse
import ipaddress
from pathlib import Path

import pytest

from ferryman.cli import serve, serveconfig
from ferryman.cli.main import build_parser
from ferryman.errors import UsageError
from ferryman.host.addresses import MovableNetwork

SRC = Path("/etc/ferryman/agent.toml")
FULL = """
listen = "10.0.0.2:7070"
pki = "/etc/ferryman/pki"
name = "nodeB"
state-dir = "/srv/ferryman"
criu = "/usr/local/sbin/criu"
runc = "/usr/sbin/runc"
runc-root = "/run/runc-moved"
bundle-root = "/srv/bundles"
movable-addresses = ["10.0.0.0/24@eth0", "192.168.5.0/28@br0"]
check-roots = ["/srv/data", "/opt/app"]
max-migrations = 2
prefault = "off"
"""


def test_every_key_is_read() -> None:
    o = serveconfig.parse(FULL, SRC)
    assert o == serveconfig.FileOptions(
        listen=("10.0.0.2", 7070), pki=Path("/etc/ferryman/pki"), name="nodeB",
        state_dir=Path("/srv/ferryman"), criu="/usr/local/sbin/criu", runc="/usr/sbin/runc",
        runc_root=Path("/run/runc-moved"), bundle_root=Path("/srv/bundles"),
        movable_addresses=(MovableNetwork(ipaddress.IPv4Network("10.0.0.0/24"), "eth0"),
                           MovableNetwork(ipaddress.IPv4Network("192.168.5.0/28"), "br0")),
        check_roots=(Path("/srv/data"), Path("/opt/app")), max_migrations=2, prefault="off")


def test_every_serve_option_has_a_key_except_the_test_ones() -> None:
    """A new serve option must be settable in the file too (or be deliberately left out)."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    flags = {opt[2:] for a in sub.choices["serve"]._actions for opt in a.option_strings
             if opt.startswith("--")}
    left_out = {"help", "config", "install-unit", "test-hide-feature",
                "test-pause-after-restore", "no-launcher"}  # the file's is "launcher"
    assert flags - left_out == set(serveconfig.KEYS) - {"launcher"}


def test_an_empty_file_sets_nothing() -> None:
    assert serveconfig.parse("# nothing yet\n", SRC) == serveconfig.FileOptions()


def test_relative_paths_are_relative_to_the_file() -> None:
    o = serveconfig.parse('pki = "pki"\nstate-dir = "../state"\ncheck-roots = ["data"]\n',
                          Path("/etc/ferryman/agent.toml"))
    assert o.pki == Path("/etc/ferryman/pki")
    assert o.state_dir == Path("/etc/ferryman/../state")
    assert o.check_roots == (Path("/etc/ferryman/data"),)


def error(text: str) -> str:
    with pytest.raises(UsageError) as err:
        serveconfig.parse(text, SRC)
    line = err.value.one_line()
    assert "\n" not in line
    return line


def test_an_unknown_key_is_named_with_the_file() -> None:
    line = error('listen = "10.0.0.2:7070"\nstate_dir = "/x"\n')
    assert line.startswith(f"{SRC}: unknown key 'state_dir'"), line
    assert "state-dir" in line  # the hint lists the keys


def test_a_table_is_an_unknown_key() -> None:
    assert "unknown key 'agent'" in error('[agent]\nlisten = "10.0.0.2:7070"\n')


@pytest.mark.parametrize(("text", "key"), [
    ('listen = "10.0.0.2"', "listen"),
    ('listen = "10.0.0.2:99999"', "listen"),
    ('listen = "nodeB:7070"', "listen"),
    ("listen = 7070", "listen"),
    ('name = ""', "name"),
    ("pki = 3", "pki"),
    ('movable-addresses = "10.0.0.0/24@eth0"', "movable-addresses"),  # a list, not a string
    ('movable-addresses = ["10.0.0.0/24"]', "movable-addresses"),
    ("check-roots = [1]", "check-roots"),
    ("max-migrations = 0", "max-migrations"),
    ("max-migrations = true", "max-migrations"),
    ('max-migrations = "4"', "max-migrations"),
    ("max-migrations = 2.5", "max-migrations"),
    ('prefault = "yes"', "prefault"),
    ("prefault = true", "prefault"),
])
def test_a_bad_value_is_named_with_its_key_and_the_file(text: str, key: str) -> None:
    line = error(text)
    assert line.startswith(f"{SRC}: bad value for '{key}': "), line


def test_invalid_toml_names_the_file() -> None:
    line = error("listen = \n")
    assert line.startswith(f"{SRC}: not valid TOML"), line


def args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["serve", *argv])


def test_flags_override_the_file_and_the_file_overrides_the_defaults() -> None:
    file = serveconfig.parse(FULL, SRC)
    s = serve.merge(args("--listen", "127.0.0.1:7171", "--max-migrations", "7",
                         "--check-roots", "/a,/b", "--movable-addresses", ""), file)
    assert (s.host, s.port) == ("127.0.0.1", 7171)
    assert s.max_migrations == 7
    assert s.check_roots == (Path("/a"), Path("/b"))
    assert s.movable == ()  # given empty on the command line: none, whatever the file says
    assert s.prefault == "off"  # the file's
    assert serve.merge(args("--prefault", "on"), file).prefault == "on"
    assert serve.merge(args(), serveconfig.FileOptions(listen=("10.0.0.2", 7070), pki=SRC,
                                                       name="b")).prefault == "auto"
    assert s.name == "nodeB"
    assert s.state_dir == Path("/srv/ferryman")
    assert s.runc_root == Path("/run/runc-moved")
    assert s.bundle_root == Path("/srv/bundles")
    assert s.criu == "/usr/local/sbin/criu"


def test_defaults_when_neither_says() -> None:
    s = serve.merge(args("--listen", "10.0.0.2:7070", "--pki", "/p", "--name", "b"),
                    serveconfig.FileOptions())
    assert s == serve.Settings(
        name="b", host="10.0.0.2", port=7070, pki=Path("/p"), state_dir=Path("/var/lib/ferryman"),
        criu="criu", runc="runc", runc_root=Path("/run/runc"), bundle_root=None, movable=(),
        check_roots=(), max_migrations=4)


@pytest.mark.parametrize("missing", ["listen", "pki", "name"])
def test_listen_pki_and_name_are_needed_from_one_or_the_other(missing: str) -> None:
    given = {"listen": "10.0.0.2:7070", "pki": "/p", "name": "b"}
    del given[missing]
    argv = [x for k, v in given.items() for x in (f"--{k}", v)]
    with pytest.raises(UsageError) as err:
        serve.merge(args(*argv), serveconfig.FileOptions())
    assert err.value.one_line() == (f"serve needs --{missing}: give --{missing}, "
                                    f"or '{missing}' in the --config file")
    file = serveconfig.parse(FULL, SRC)
    assert serve.merge(args(*argv), file)  # the file supplies it


def test_the_installed_unit_runs_this_ferryman_with_the_config() -> None:
    template = "[Service]\nExecStart=/usr/local/bin/ferryman serve --config " \
               "/etc/ferryman/agent.toml\nRestart=on-failure\n"
    text = serve.unit_text(template, ["/opt/fm venv/bin/ferryman"], Path("/etc/fm/a.toml"))
    assert text == ("[Service]\nExecStart='/opt/fm venv/bin/ferryman' serve --config "
                    "/etc/fm/a.toml\nRestart=on-failure\n")
