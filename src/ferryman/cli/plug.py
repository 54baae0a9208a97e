"""``ferryman plug``: switch a node's power through its TP-Link HS100/HS110 smart plug."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from ferryman.errors import UsageError
from ferryman.power.address import PlugAddress
from ferryman.power.client import DEFAULT_RETRIES, DEFAULT_TIMEOUT_S, PlugClient
from ferryman.power.codec import JSONObject, JSONValue, check_reply, validate_request
from ferryman.power.device import Plug, SysInfo
from ferryman.power.discovery import BROADCAST, discover
from ferryman.power.errors import about_plug
from ferryman.power.inventory import Inventory, load_inventory, resolve_target

_NO_ARGUMENT = frozenset({"on", "off", "toggle", "state", "info", "reboot", "energy"})
_ONE_ARGUMENT = {"led": "on|off", "alias": "NAME", "raw": "JSON"}
ACTIONS = (*sorted(_NO_ARGUMENT), *_ONE_ARGUMENT)

_EPILOG = """\
actions:
  on | off | toggle     switch the relay, read it back, print ON or OFF
  state                 print ON or OFF
  info                  model, firmware, alias, state, LED, signal
  led on|off            switch the plug's LED
  alias NAME            rename the plug
  reboot [--delay S]    reboot the plug (the relay keeps its state)
  energy                voltage, current, power and total energy (HS110 only)
  raw JSON              send a request such as '{"system":{"get_sysinfo":{}}}'

exit codes: 0 ok, 2 usage, 20 power error, 21 unreachable, 22 device error (err_code),
23 protocol error, 24 unsupported firmware (KLAP), 25 relay did not switch, 26 inventory
"""


@dataclass(frozen=True, slots=True)
class _Command:
    action: str
    argument: str | None = None
    delay_s: int = 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "plug",
        help="switch a node's power through its TP-Link HS100/HS110 smart plug",
        description="Control TP-Link HS100/HS110 smart plugs over their local protocol "
        "(port 9999).",
        usage="%(prog)s TARGET ACTION [ARG] [options]\n"
        "       %(prog)s discover [--target BROADCAST] [--timeout S] [--json]",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("target", metavar="TARGET",
                        help="host, host:port, a node listed in --inventory, or 'discover'")
    parser.add_argument("action", nargs="?", metavar="ACTION", help="see the list below")
    parser.add_argument("args", nargs="*", metavar="ARG", help=argparse.SUPPRESS)
    parser.add_argument("--inventory", type=Path, metavar="FILE",
                        help="TOML file mapping node names to plug addresses")
    parser.add_argument("--json", action="store_true", help="print JSON for machines")
    parser.add_argument("--timeout", type=_positive_float, default=DEFAULT_TIMEOUT_S,
                        metavar="S", help="seconds per attempt; for discover, how long to "
                        "listen (default %(default)g)")
    parser.add_argument("--retries", type=_non_negative_int, default=DEFAULT_RETRIES,
                        metavar="N", help="retries after a timeout or a broken reply "
                        "(default %(default)d; none when refused or unreachable)")
    parser.add_argument("--delay", type=_non_negative_int, metavar="S",
                        help="reboot: seconds before the plug reboots (default 1)")
    parser.add_argument("--target", dest="broadcast", metavar="BROADCAST",
                        help=f"discover: address[:port] to send to (default {BROADCAST.host})")
    parser.set_defaults(run=run)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a whole number >= 0: {text!r}")
    return int(text)


def run(args: argparse.Namespace) -> int:
    if args.target == "discover":
        if args.action is not None or args.delay is not None:
            raise UsageError("discover takes only --target, --timeout and --json")
        return asyncio.run(_discover(args))
    if args.broadcast is not None:
        raise UsageError("--target is for 'plug discover'; put the plug's address first")
    command = _parse_command(args)
    inventory = load_inventory(args.inventory) if args.inventory is not None else None
    address = _resolve(args.target, inventory)
    client = PlugClient(address, timeout=args.timeout, retries=args.retries)
    return asyncio.run(_execute(Plug(client), command, as_json=args.json))


def _parse_command(args: argparse.Namespace) -> _Command:
    action: str | None = args.action
    extra: list[str] = args.args
    if action is None:
        raise UsageError("missing ACTION", hint=f"one of: {', '.join(ACTIONS)}")
    if action not in ACTIONS:
        raise UsageError(f"unknown action {action!r}", hint=f"one of: {', '.join(ACTIONS)}")
    if args.delay is not None and action != "reboot":
        raise UsageError("--delay applies only to reboot")
    if action in _NO_ARGUMENT:
        if extra:
            raise UsageError(f"{action} takes no argument, got {' '.join(extra)!r}")
        return _Command(action, delay_s=1 if args.delay is None else args.delay)
    if len(extra) != 1:
        raise UsageError(f"{action} takes one argument: {action} {_ONE_ARGUMENT[action]}")
    argument = extra[0]
    if action == "led" and argument not in ("on", "off"):
        raise UsageError(f"led takes on or off, not {argument!r}")
    if action == "alias" and not argument.strip():
        raise UsageError("the alias must not be empty")
    return _Command(action, argument)


def _resolve(target: str, inventory: Inventory | None) -> PlugAddress:
    try:
        return resolve_target(target, inventory)
    except ValueError as exc:
        where = f"a node in {inventory.source} nor " if inventory is not None else ""
        raise UsageError(f"TARGET {target!r} is neither {where}a host[:port]: {exc}") from exc


def _parse_raw(text: str) -> JSONObject:
    try:
        return validate_request(json.loads(text))
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise UsageError(f"raw: not a request: {exc}",
                         hint='write it like \'{"system":{"get_sysinfo":{}}}\'') from exc


async def _execute(plug: Plug, command: _Command, *, as_json: bool) -> int:
    action, argument = command.action, command.argument
    here: JSONObject = {"plug": str(plug.address)}
    if action in ("on", "off", "toggle", "state"):
        if action == "state":
            info = await plug.sysinfo()
        elif action == "toggle":
            info = await plug.toggle()
        else:
            info = await plug.switch(action == "on")
        _emit(as_json, {**here, "on": info.is_on}, "ON" if info.is_on else "OFF")
    elif action == "info":
        info = await plug.sysinfo()
        _emit(as_json, {**here, **_sysinfo_json(info)}, _sysinfo_text(info))
    elif action == "led":
        await plug.set_led(argument == "on")
        _emit(as_json, {**here, "led_on": argument == "on"}, f"LED {str(argument).upper()}")
    elif action == "alias":
        name = str(argument)
        await plug.set_alias(name)
        _emit(as_json, {**here, "alias": name}, name)
    elif action == "reboot":
        await plug.reboot(command.delay_s)
        _emit(as_json, {**here, "reboot_in_s": command.delay_s},
              f"rebooting in {command.delay_s} s")
    elif action == "energy":
        reading = await plug.energy()
        values: JSONObject = asdict(reading)
        text = (f"voltage  {reading.voltage_v:.1f} V\ncurrent  {reading.current_a:.3f} A\n"
                f"power    {reading.power_w:.1f} W\ntotal    {reading.total_kwh:.3f} kWh")
        _emit(as_json, {**here, **values}, text)
    else:  # raw
        request = _parse_raw(str(argument))
        reply = await plug.raw(request)
        print(json.dumps(reply, indent=2, ensure_ascii=False))
        with about_plug(str(plug.address)):
            check_reply(request, reply)
    return 0


def _emit(as_json: bool, data: JSONValue, text: str) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False) if as_json else text)


def _sysinfo_json(info: SysInfo) -> JSONObject:
    info_json: JSONObject = asdict(info)
    return info_json


def _sysinfo_text(info: SysInfo) -> str:
    state = "ON" if info.is_on else "OFF"
    if info.is_on and info.on_time_s:
        state += f" (for {info.on_time_s} s)"
    rows = [
        ("alias", info.alias),
        ("model", info.model),
        ("hardware", info.hardware_version),
        ("firmware", info.software_version),
        ("mac", info.mac),
        ("device id", info.device_id),
        ("state", state),
        ("led", "on" if info.led_on else "off"),
        ("energy meter", "yes" if info.has_emeter else "no"),
        ("signal", f"{info.rssi_dbm} dBm" if info.rssi_dbm is not None else "unknown"),
    ]
    return "\n".join(f"{name:<13}{value}" for name, value in rows)


async def _discover(args: argparse.Namespace) -> int:
    try:
        target = BROADCAST if args.broadcast is None else PlugAddress.parse(args.broadcast)
    except ValueError as exc:
        raise UsageError(f"--target: {exc}") from exc
    plugs = await discover(target, listen_s=args.timeout)
    if args.json:
        listing: list[JSONValue] = [
            {"address": str(plug.address), **_sysinfo_json(plug.sysinfo)} for plug in plugs
        ]
        print(json.dumps(listing, indent=2, ensure_ascii=False))
    elif not plugs:
        print(f"no plug answered within {args.timeout:g} s", file=sys.stderr)
    for plug in [] if args.json else plugs:
        info = plug.sysinfo
        print(f"{plug.address!s:<22} {info.model:<12} hw {info.hardware_version:<5} "
              f"{'ON' if info.is_on else 'OFF':<4} {info.alias}")
    return 0
