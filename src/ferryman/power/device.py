"""The plug as ferryman sees it: a typed ``SysInfo`` and the ``Plug`` operations.

``Plug`` talks through anything with an async ``query(request) -> reply`` (the TCP
:class:`~ferryman.power.client.PlugClient` in production, a simulator in unit tests).

Known ``system`` methods of the firmware: get_sysinfo, set_relay_state {state},
set_led_off {off}, set_dev_alias {alias}, reboot {delay}, reset {delay}, set_dev_location,
get_dev_icon, set_dev_icon, download_firmware, flash_firmware, set_test_mode, set_mac_addr,
set_device_id, set_hw_id; and ``emeter.get_realtime`` on the HS110. Only the harmless ones
have methods here; the others can be sent as raw requests.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol, TypeGuard

from ferryman.power.address import PlugAddress
from ferryman.power.codec import (
    SYSINFO_REQUEST,
    EnergyReading,
    JSONObject,
    JSONValue,
    check_reply,
    method_result,
    normalise_realtime,
)
from ferryman.power.errors import (
    PlugDeviceError,
    PlugProtocolError,
    PlugStateNotChanged,
    about_plug,
)

log = logging.getLogger(__name__)


class Querier(Protocol):
    """Sends one JSON request to one plug and returns its (unchecked) JSON reply."""

    @property
    def address(self) -> PlugAddress: ...

    async def query(self, request: JSONObject) -> JSONObject: ...


@dataclass(frozen=True, slots=True)
class SysInfo:
    """The parts of ``system.get_sysinfo`` that ferryman uses, under stable names."""

    alias: str
    model: str
    hardware_version: str
    software_version: str
    mac: str
    device_id: str
    device_type: str
    is_on: bool
    led_on: bool
    on_time_s: int
    has_emeter: bool
    rssi_dbm: int | None

    @classmethod
    def from_json(cls, info: JSONObject) -> SysInfo:
        """Parse a get_sysinfo result; firmware generations name some fields differently."""
        relay = info.get("relay_state")
        if relay not in (0, 1) or isinstance(relay, bool):
            raise PlugProtocolError(f"sysinfo relay_state is {relay!r}, not 0 or 1")
        led_off = info.get("led_off", 0)
        on_time = info.get("on_time", 0)
        rssi = info.get("rssi")
        return cls(
            alias=_text(info, "alias"),
            model=_text(info, "model"),
            hardware_version=_text(info, "hw_ver", required=False),
            software_version=_text(info, "sw_ver", required=False),
            mac=_text(info, "mac", "mic_mac", "ethernet_mac", required=False),
            device_id=_text(info, "deviceId", required=False),
            device_type=_text(info, "type", "mic_type", required=False),
            is_on=relay == 1,
            led_on=not led_off,
            on_time_s=on_time if _is_int(on_time) else 0,
            has_emeter="ENE" in _text(info, "feature", required=False).split(":"),
            rssi_dbm=rssi if _is_int(rssi) else None,
        )


def _is_int(value: JSONValue) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(info: JSONObject, *keys: str, required: bool = True) -> str:
    for key in keys:
        value = info.get(key)
        if isinstance(value, str):
            return value
    if required:
        raise PlugProtocolError(f"sysinfo lacks the text field {keys[0]!r}")
    return ""


class Plug:
    """One HS100/HS110. Methods raise PowerError subclasses that carry the plug's address."""

    def __init__(self, querier: Querier) -> None:
        self._querier = querier

    @property
    def address(self) -> PlugAddress:
        return self._querier.address

    async def raw(self, request: JSONObject) -> JSONObject:
        """Send any request; return the reply as it came, without checking ``err_code``."""
        return await self._querier.query(request)

    async def query(self, request: JSONObject) -> JSONObject:
        """Send any request; raise PlugDeviceError if any method in it failed."""
        reply = await self._querier.query(request)
        with about_plug(str(self.address)):
            check_reply(request, reply)
        return reply

    async def call(self, module: str, method: str, args: JSONObject | None = None) -> JSONObject:
        """Call one method and return its checked result object."""
        reply = await self._querier.query({module: {method: args if args is not None else {}}})
        with about_plug(str(self.address)):
            return method_result(reply, module, method)

    async def sysinfo(self) -> SysInfo:
        reply = await self._querier.query(SYSINFO_REQUEST)
        with about_plug(str(self.address)):
            return SysInfo.from_json(method_result(reply, "system", "get_sysinfo"))

    async def switch(self, on: bool) -> SysInfo:
        """Switch the relay, then read the state back; PlugStateNotChanged if it did not."""
        await self.call("system", "set_relay_state", {"state": int(on)})
        info = await self.sysinfo()
        if info.is_on != on:
            raise PlugStateNotChanged(on, plug=str(self.address))
        log.info("plug %s switched %s", self.address, "on" if on else "off")
        return info

    async def toggle(self) -> SysInfo:
        info = await self.sysinfo()
        return await self.switch(not info.is_on)

    async def set_led(self, on: bool) -> None:
        await self.call("system", "set_led_off", {"off": int(not on)})

    async def set_alias(self, alias: str) -> None:
        await self.call("system", "set_dev_alias", {"alias": alias})

    async def reboot(self, delay_s: int = 1) -> None:
        await self.call("system", "reboot", {"delay": delay_s})

    async def energy(self) -> EnergyReading:
        try:
            result = await self.call("emeter", "get_realtime")
        except PlugDeviceError as exc:
            if exc.err_code not in (-1, -2):
                raise
            raise PlugDeviceError(
                exc.err_code,
                exc.device_message,
                module=exc.module,
                method=exc.method,
                plug=exc.plug,
                hint="this plug has no energy meter: the HS110 measures energy, the HS100 not",
            ) from exc
        with about_plug(str(self.address)):
            return normalise_realtime(result)
