"""``ferryman plug`` end to end against simulated HS100/HS110 plugs on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest

from ferryman.cli.main import main
from ferryman.power.address import PlugAddress
from ferryman.power.client import PlugClient
from ferryman.power.codec import SYSINFO_REQUEST, encode_request
from ferryman.power.errors import PlugUnsupportedFirmware
from tests.support.hs100_sim import (
    HS100_V1,
    HS100_V2,
    HS110_V1,
    HS110_V2,
    LEGACY_PREFIX,
    PROFILES,
    Faults,
    Hardware,
    SimulatedPlug,
    SimulatorThread,
    refusing_port,
    unanswered_port,
    xor_encrypt,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(20)]

ROOT = Path(__file__).resolve().parents[2]
EXIT_UNREACHABLE, EXIT_DEVICE, EXIT_PROTOCOL, EXIT_FIRMWARE, EXIT_NOT_SWITCHED = 21, 22, 23, 24, 25


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


StartPlug = Callable[..., SimulatedPlug]
Ferryman = Callable[..., Result]


@pytest.fixture(scope="module")
def simulator() -> Iterator[SimulatorThread]:
    with SimulatorThread() as runner:
        yield runner


@pytest.fixture
def start_plug(simulator: SimulatorThread) -> Iterator[StartPlug]:
    def start(hardware: Hardware = HS110_V2, **kwargs: Any) -> SimulatedPlug:
        return simulator.start_plug(hardware, **kwargs)

    yield start
    simulator.stop_all()


@pytest.fixture
def ferryman(capsys: pytest.CaptureFixture[str]) -> Ferryman:
    def invoke(*argv: str) -> Result:
        code = main(["plug", *argv])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke


def target(plug: SimulatedPlug) -> str:
    return f"{plug.host}:{plug.port}"


@pytest.mark.parametrize("hardware", PROFILES.values(), ids=PROFILES.keys())
def test_info_shows_model_and_hardware_of_each_generation(
    start_plug: StartPlug, ferryman: Ferryman, hardware: Hardware
) -> None:
    plug = start_plug(hardware, alias="rack-2")
    result = ferryman(target(plug), "info")
    assert result.code == 0, result.err
    assert hardware.model in result.out
    assert f"hardware     {hardware.hw_ver}" in result.out
    assert "rack-2" in result.out


@pytest.mark.parametrize("hardware", PROFILES.values(), ids=PROFILES.keys())
def test_on_and_off_switch_the_relay_and_print_the_read_back_state(
    start_plug: StartPlug, ferryman: Ferryman, hardware: Hardware
) -> None:
    plug = start_plug(hardware)
    assert ferryman(target(plug), "on") == Result(0, "ON\n", "")
    assert plug.relay_state == 1
    assert ferryman(target(plug), "state").out == "ON\n"
    assert ferryman(target(plug), "off") == Result(0, "OFF\n", "")
    assert plug.relay_state == 0
    assert ferryman(target(plug), "state").out == "OFF\n"


def test_toggle_flips_the_relay(start_plug: StartPlug, ferryman: Ferryman) -> None:
    plug = start_plug(HS100_V2)
    assert ferryman(target(plug), "toggle").out == "ON\n"
    assert ferryman(target(plug), "toggle").out == "OFF\n"


def test_json_is_accepted_before_and_after_the_action(
    start_plug: StartPlug, ferryman: Ferryman
) -> None:
    plug = start_plug(HS110_V1)
    after = ferryman(target(plug), "info", "--json")
    before = ferryman("--json", target(plug), "info")
    assert after.code == before.code == 0
    assert after.json() == before.json()
    assert after.json()["model"] == "HS110(EU)"
    assert after.json()["plug"] == target(plug)
    assert ferryman(target(plug), "on", "--json").json() == {"plug": target(plug), "on": True}


def test_relay_that_does_not_switch_fails_with_its_own_exit_code(
    start_plug: StartPlug, ferryman: Ferryman
) -> None:
    plug = start_plug(HS100_V1, faults=Faults(stuck_relay=True))
    result = ferryman(target(plug), "on")
    assert result.code == EXIT_NOT_SWITCHED
    assert "did not switch ON" in result.err


@pytest.mark.parametrize("hardware", [HS110_V1, HS110_V2], ids=["hw-v1", "hw-v2"])
def test_energy_is_normalised_for_both_hs110_generations(
    start_plug: StartPlug, ferryman: Ferryman, hardware: Hardware
) -> None:
    plug = start_plug(hardware)
    plug.relay_state = 1
    result = ferryman(target(plug), "energy", "--json")
    assert result.code == 0, result.err
    assert result.json() == {"plug": target(plug), "voltage_v": 230.1, "current_a": 0.512,
                             "power_w": 117.8, "total_kwh": 1.234}
    assert "power    117.8 W" in ferryman(target(plug), "energy").out


@pytest.mark.parametrize("position", ["module", "method"])
def test_energy_on_an_hs100_is_a_device_error_with_err_code_minus_1(
    start_plug: StartPlug, ferryman: Ferryman, position: Literal["module", "method"]
) -> None:
    plug = start_plug(HS100_V2, faults=Faults(error_position=position))
    result = ferryman(target(plug), "energy")
    assert result.code == EXIT_DEVICE
    assert "err_code -1 (module not support)" in result.err
    assert "no energy meter" in result.err


@pytest.mark.parametrize("position", ["module", "method"])
def test_raw_unknown_method_prints_the_reply_and_fails_with_err_code_minus_2(
    start_plug: StartPlug, ferryman: Ferryman, position: Literal["module", "method"]
) -> None:
    plug = start_plug(HS100_V1, faults=Faults(error_position=position))
    result = ferryman(target(plug), "raw", '{"system":{"get_nothing":{}}}')
    assert result.code == EXIT_DEVICE
    assert "err_code -2 (member not support)" in result.err
    reply = result.json()["system"]
    assert reply.get("err_code", reply.get("get_nothing", {}).get("err_code")) == -2


def test_raw_sends_any_request_and_prints_the_reply(
    start_plug: StartPlug, ferryman: Ferryman
) -> None:
    plug = start_plug(HS110_V2)
    result = ferryman(target(plug), "raw",
                      '{"system":{"get_sysinfo":{}},"emeter":{"get_realtime":{}}}')
    assert result.code == 0, result.err
    assert result.json()["system"]["get_sysinfo"]["model"] == "HS110(EU)"
    assert "voltage_mv" in result.json()["emeter"]["get_realtime"]


def test_led_alias_and_reboot_reach_the_plug(start_plug: StartPlug, ferryman: Ferryman) -> None:
    plug = start_plug(HS110_V1)
    assert ferryman(target(plug), "led", "off").out == "LED OFF\n"
    assert plug.led_off == 1
    assert ferryman(target(plug), "alias", "rack 3").out == "rack 3\n"
    assert plug.alias == "rack 3"
    assert ferryman(target(plug), "reboot", "--delay", "2").code == 0
    assert ferryman(target(plug), "reboot").code == 0
    assert plug.reboots == [2, 1]


def test_reply_split_into_tiny_segments_is_reassembled(
    start_plug: StartPlug, ferryman: Ferryman
) -> None:
    plug = start_plug(HS110_V2, faults=Faults(split_reply=3))
    result = ferryman(target(plug), "info", "--json")
    assert result.code == 0, result.err
    assert result.json()["model"] == "HS110(EU)"


def test_connection_closed_mid_reply_is_retried(start_plug: StartPlug, ferryman: Ferryman) -> None:
    plug = start_plug(HS100_V2, faults=Faults(close_mid_reply=2))
    assert ferryman(target(plug), "state", "--retries", "2").out == "OFF\n"
    assert plug.faults.close_mid_reply == 0


def test_connection_closed_mid_reply_every_time_is_a_protocol_error(
    start_plug: StartPlug, ferryman: Ferryman
) -> None:
    plug = start_plug(HS100_V2, faults=Faults(close_mid_reply=100))
    result = ferryman(target(plug), "state", "--retries", "1")
    assert result.code == EXIT_PROTOCOL
    assert "closed mid-reply" in result.err
    assert plug.faults.close_mid_reply == 98  # one try and one retry


def test_refused_port_is_unsupported_klap_firmware_at_once(ferryman: Ferryman) -> None:
    with refusing_port() as port:
        started = time.monotonic()
        result = ferryman(f"127.0.0.1:{port}", "on", "--retries", "3")
    assert result.code == EXIT_FIRMWARE
    assert "refused" in result.err
    assert "KLAP" in result.err
    assert time.monotonic() - started < 1.0


def test_refused_port_is_not_retried() -> None:
    with refusing_port() as port:
        client = PlugClient(PlugAddress("127.0.0.1", port), timeout=2, retries=3)
        with pytest.raises(PlugUnsupportedFirmware):
            asyncio.run(client.query(SYSINFO_REQUEST))
    assert client.statistics().attempts == 1


def test_silent_port_is_unsupported_firmware_after_bounded_retries(
    start_plug: StartPlug, ferryman: Ferryman
) -> None:
    plug = start_plug(HS100_V2, faults=Faults(silent=True))
    started = time.monotonic()
    result = ferryman(target(plug), "state", "--timeout", "0.2", "--retries", "1")
    assert result.code == EXIT_FIRMWARE
    assert "never answered (2 attempts of 0.2 s)" in result.err
    assert time.monotonic() - started < 2.0


def test_unanswered_connection_is_unreachable(ferryman: Ferryman) -> None:
    with unanswered_port() as port:
        result = ferryman(f"127.0.0.1:{port}", "state", "--timeout", "0.2", "--retries", "0")
    assert result.code == EXIT_UNREACHABLE
    assert "unreachable" in result.err


def _exchange_raw(port: int, message: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(message)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
            if len(b"".join(chunks)) >= 4 + int.from_bytes(b"".join(chunks)[:4], "big"):
                break
        return b"".join(chunks)


def test_newer_firmware_drops_the_legacy_fixed_prefix_but_answers_the_real_length(
    start_plug: StartPlug, ferryman: Ferryman
) -> None:
    plug = start_plug(HS100_V2)
    legacy = LEGACY_PREFIX + encode_request(SYSINFO_REQUEST)[4:]
    assert _exchange_raw(plug.port, legacy) == b""  # dropped, connection closed
    assert plug.dropped == 1
    assert ferryman(target(plug), "state").out == "OFF\n"


def test_old_firmware_ignores_a_wrong_length_prefix(start_plug: StartPlug) -> None:
    plug = start_plug(HS100_V1, faults=Faults(strict_length=False))
    legacy = LEGACY_PREFIX + xor_encrypt(b'{"system":{"get_sysinfo":{}}}')
    assert len(_exchange_raw(plug.port, legacy)) > 100


def test_node_name_is_resolved_through_the_inventory(
    start_plug: StartPlug, ferryman: Ferryman, tmp_path: Path
) -> None:
    plug = start_plug(HS110_V2)
    inventory = tmp_path / "plugs.toml"
    inventory.write_text(f'node-7 = "{target(plug)}"\n', encoding="utf-8")
    assert ferryman("--inventory", str(inventory), "node-7", "on").out == "ON\n"
    assert plug.relay_state == 1


def test_broken_inventory_has_its_own_exit_code(ferryman: Ferryman, tmp_path: Path) -> None:
    inventory = tmp_path / "plugs.toml"
    inventory.write_text("node-7 = 12\n", encoding="utf-8")
    result = ferryman("--inventory", str(inventory), "node-7", "on")
    assert result.code == 26
    assert "node-7" in result.err


@pytest.mark.parametrize(
    "argv",
    [("127.0.0.1:1",), ("127.0.0.1:1", "dance"), ("127.0.0.1:1", "led", "dim"),
     ("127.0.0.1:1", "alias"), ("127.0.0.1:1", "raw", "{not json"),
     ("127.0.0.1:1", "raw", '{"system":1}'), ("127.0.0.1:1", "on", "--delay", "3"),
     ("127.0.0.1:1", "on", "extra"), ("host:port", "on"), ("discover", "on")],
)
def test_bad_command_lines_are_usage_errors_before_any_network(
    ferryman: Ferryman, argv: tuple[str, ...]
) -> None:
    result = ferryman(*argv)
    assert result.code == 2
    assert result.err.startswith("ferryman: error:")


def test_discover_by_loopback_broadcast_finds_every_plug(
    start_plug: StartPlug, ferryman: Ferryman
) -> None:
    first = start_plug(HS100_V1, host="127.0.0.2", alias="rack-1")
    second = start_plug(HS110_V2, host="127.0.0.3", port=first.port, alias="rack-2")
    result = ferryman("discover", "--target", f"127.255.255.255:{first.port}",
                      "--timeout", "0.3", "--json")
    assert result.code == 0, result.err
    found = {entry["address"]: (entry["model"], entry["alias"]) for entry in result.json()}
    assert found == {target(first): ("HS100(US)", "rack-1"),
                     target(second): ("HS110(EU)", "rack-2")}


def test_discovered_address_can_be_switched(start_plug: StartPlug, ferryman: Ferryman) -> None:
    plug = start_plug(HS110_V1, alias="rack-4")
    listing = ferryman("discover", "--target", target(plug), "--timeout", "0.2")
    assert listing.code == 0, listing.err
    address, model = listing.out.split()[:2]
    assert (address, model) == (target(plug), "HS110(EU)")
    assert ferryman(address, "on").out == "ON\n"


def test_discover_without_answers_succeeds_with_an_empty_list(ferryman: Ferryman) -> None:
    with refusing_port() as port:  # nothing listens for UDP there either
        result = ferryman("discover", "--target", f"127.0.0.1:{port}", "--timeout", "0.2",
                          "--json")
    assert (result.code, result.json()) == (0, [])


def _run_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "ferryman", "plug", *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=15, check=False)


def test_cli_process_switches_a_plug_and_exits_zero(start_plug: StartPlug) -> None:
    plug = start_plug(HS110_V2)
    done = _run_cli(target(plug), "on")
    assert (done.returncode, done.stdout, done.stderr) == (0, "ON\n", "")
    assert plug.relay_state == 1


def test_cli_process_exit_code_tells_klap_firmware_apart() -> None:
    with refusing_port() as port:
        done = _run_cli(f"127.0.0.1:{port}", "state")
    assert done.returncode == EXIT_FIRMWARE
    assert done.stderr.startswith(f"ferryman: error: plug 127.0.0.1:{port}: port {port} refused")
