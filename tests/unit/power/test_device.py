"""SysInfo parsing and Plug operations, against the simulator's firmware logic (no sockets)."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from ferryman.power.address import PlugAddress
from ferryman.power.codec import EnergyReading, JSONObject, encode_datagram
from ferryman.power.device import Plug, SysInfo
from ferryman.power.discovery import parse_discovery_reply
from ferryman.power.errors import (
    PlugDeviceError,
    PlugProtocolError,
    PlugStateNotChanged,
    PowerError,
)
from tests.support.hs100_sim import (
    HS100_V1,
    HS100_V2,
    HS110_V1,
    HS110_V2,
    PROFILES,
    Faults,
    Hardware,
    SimulatedPlug,
    xor_encrypt,
)

T = TypeVar("T")
ADDRESS = PlugAddress("192.0.2.7")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 5))


class FirmwareQuerier:
    """Hands requests straight to the simulated firmware (deep-copied, as if serialised)."""

    address = ADDRESS

    def __init__(self, sim: SimulatedPlug) -> None:
        self.sim = sim

    async def query(self, request: JSONObject) -> JSONObject:
        reply: JSONObject = copy.deepcopy(self.sim.handle(copy.deepcopy(request)))
        return reply


def plug_for(hardware: Hardware, **faults: Any) -> tuple[Plug, SimulatedPlug]:
    sim = SimulatedPlug(hardware, faults=Faults(**faults))
    return Plug(FirmwareQuerier(sim)), sim


@pytest.mark.parametrize("hardware", PROFILES.values(), ids=PROFILES.keys())
def test_sysinfo_of_every_generation_parses_to_the_same_fields(hardware: Hardware) -> None:
    info = SysInfo.from_json(SimulatedPlug(hardware, alias="rack-1").sysinfo())
    assert info.model == hardware.model
    assert info.hardware_version == hardware.hw_ver
    assert info.alias == "rack-1"
    assert info.is_on is False
    assert info.led_on is True
    assert info.has_emeter is bool(hardware.emeter)
    assert info.rssi_dbm == -58


def test_sysinfo_accepts_older_field_names() -> None:
    info = SysInfo.from_json({"alias": "a", "model": "HS100(US)", "relay_state": 1,
                              "mic_type": "IOT.SMARTPLUGSWITCH", "mic_mac": "50C7BF001122"})
    assert (info.device_type, info.mac, info.is_on) == ("IOT.SMARTPLUGSWITCH", "50C7BF001122", True)
    assert info.rssi_dbm is None


@pytest.mark.parametrize(
    "info",
    [{"model": "HS100", "relay_state": 0}, {"alias": "a", "model": "HS100"},
     {"alias": "a", "model": "HS100", "relay_state": 2},
     {"alias": "a", "model": "HS100", "relay_state": True}],
)
def test_sysinfo_without_alias_model_or_a_valid_relay_state_is_a_protocol_error(
    info: JSONObject,
) -> None:
    with pytest.raises(PlugProtocolError):
        SysInfo.from_json(info)


@pytest.mark.parametrize("hardware", [HS100_V1, HS110_V2], ids=["hs100-v1", "hs110-v2"])
def test_switch_on_and_off_reads_the_state_back(hardware: Hardware) -> None:
    plug, sim = plug_for(hardware)
    assert run(plug.switch(True)).is_on is True
    assert sim.relay_state == 1
    assert run(plug.switch(False)).is_on is False
    assert sim.relay_state == 0
    assert [list(r["system"]) for r in sim.requests] == [
        ["set_relay_state"], ["get_sysinfo"], ["set_relay_state"], ["get_sysinfo"]]


def test_toggle_flips_the_relay_each_time() -> None:
    plug, _ = plug_for(HS100_V2)
    assert run(plug.toggle()).is_on is True
    assert run(plug.toggle()).is_on is False


def test_relay_that_ignores_the_command_raises_state_not_changed() -> None:
    plug, _ = plug_for(HS110_V1, stuck_relay=True)
    with pytest.raises(PlugStateNotChanged) as caught:
        run(plug.switch(True))
    assert caught.value.wanted_on is True
    assert caught.value.plug == str(ADDRESS)


@pytest.mark.parametrize("hardware", [HS110_V1, HS110_V2], ids=["hw-v1", "hw-v2"])
def test_energy_of_both_hs110_generations_is_the_same_reading(hardware: Hardware) -> None:
    plug, sim = plug_for(hardware)
    sim.relay_state = 1
    assert run(plug.energy()) == EnergyReading(230.1, 0.512, 117.8, 1.234)


@pytest.mark.parametrize("position", ["natural", "module", "method"])
def test_energy_on_hs100_says_it_has_no_meter_wherever_err_code_sits(position: str) -> None:
    plug, _ = plug_for(HS100_V2, error_position=position)
    with pytest.raises(PlugDeviceError) as caught:
        run(plug.energy())
    assert caught.value.err_code == -1
    assert "no energy meter" in str(caught.value.hint)
    assert caught.value.plug == str(ADDRESS)


@pytest.mark.parametrize("position", ["natural", "module", "method"])
def test_unknown_method_is_err_code_minus_2_wherever_it_sits(position: str) -> None:
    plug, _ = plug_for(HS100_V1, error_position=position)
    with pytest.raises(PlugDeviceError) as caught:
        run(plug.call("system", "set_nothing"))
    assert caught.value.err_code == -2


def test_invalid_argument_is_err_code_minus_3() -> None:
    plug, _ = plug_for(HS100_V1)
    with pytest.raises(PlugDeviceError) as caught:
        run(plug.call("system", "set_relay_state", {"state": "on"}))
    assert caught.value.err_code == -3


def test_led_alias_and_reboot_send_the_documented_arguments() -> None:
    plug, sim = plug_for(HS110_V2)
    run(plug.set_led(False))
    run(plug.set_alias("rack-3"))
    run(plug.reboot(4))
    assert (sim.led_off, sim.alias, sim.reboots) == (1, "rack-3", [4])
    assert sim.requests[0] == {"system": {"set_led_off": {"off": 1}}}


def test_raw_returns_the_reply_unchecked_and_query_checks_it() -> None:
    plug, _ = plug_for(HS100_V1)
    request: JSONObject = {"system": {"get_sysinfo": {}}, "emeter": {"get_realtime": {}}}
    reply = run(plug.raw(request))
    assert reply["emeter"] == {"err_code": -1, "err_msg": "module not support"}
    with pytest.raises(PlugDeviceError):
        run(plug.query(request))


def test_discovery_reply_parses_to_the_sender_and_its_sysinfo() -> None:
    sim = SimulatedPlug(HS110_V1, alias="rack-9")
    datagram = xor_encrypt(json.dumps(sim.handle({"system": {"get_sysinfo": {}}})).encode())
    found = parse_discovery_reply(ADDRESS, datagram)
    assert (found.address, found.sysinfo.alias) == (ADDRESS, "rack-9")


@pytest.mark.parametrize("datagram", [b"", b"\x00garbage", encode_datagram({"system": {}})])
def test_discovery_reply_that_is_not_a_sysinfo_is_a_power_error(datagram: bytes) -> None:
    with pytest.raises(PowerError):
        parse_discovery_reply(ADDRESS, datagram)
