"""Simulated TP-Link HS100/HS110 plugs on loopback, speaking the real framing (TCP and UDP).

Answers like HS100 and HS110 firmware of both hardware generations (v1: emeter in V/A/W/kWh,
later: mV/mA/mW/Wh), with switchable faults: replies split over many TCP segments, a
connection closed mid-reply, err_code -1/-2 at module or method level, strict or lenient
length prefixes, a silent port, a relay that ignores commands. The cipher and framing are
written out again here, independently of ferryman.power.codec, so the two check each other.

From tests: ``async with SimulatedPlug(HS110_V2) as plug: ... plug.port``, or from
synchronous tests ``SimulatorThread().start_plug(...)``. From a shell:
``python -m tests.support.hs100_sim --model hs110-v2 --port 9999``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast

Json = dict[str, Any]
T = TypeVar("T")

LEGACY_PREFIX = b"\x00\x00\x00\x23"  # what old scripts send whatever the payload length


def xor_encrypt(plain: bytes) -> bytes:
    key, out = 0xAB, bytearray()
    for byte in plain:
        key ^= byte
        out.append(key)
    return bytes(out)


def xor_decrypt(cipher: bytes) -> bytes:
    key, out = 0xAB, bytearray()
    for byte in cipher:
        out.append(key ^ byte)
        key = byte
    return bytes(out)


def frame(message: Json) -> bytes:
    plain = json.dumps(message).encode()
    return struct.pack(">I", len(plain)) + xor_encrypt(plain)


@dataclass(frozen=True)
class Hardware:
    key: str
    model: str
    hw_ver: str
    sw_ver: str
    emeter: Literal[0, 1, 2]  # 0 none; 1 hardware v1 (V, A, W, kWh); 2 later (mV, mA, mW, Wh)


HS100_V1 = Hardware("hs100-v1", "HS100(US)", "1.0", "1.2.5 Build 171206 Rel.085954", 0)
HS100_V2 = Hardware("hs100-v2", "HS100(EU)", "2.0", "1.5.4 Build 180815 Rel.121440", 0)
HS110_V1 = Hardware("hs110-v1", "HS110(EU)", "1.0", "1.2.6 Build 200727 Rel.121701", 1)
HS110_V2 = Hardware("hs110-v2", "HS110(EU)", "2.0", "1.5.2 Build 180130 Rel.085820", 2)
PROFILES = {hw.key: hw for hw in (HS100_V1, HS100_V2, HS110_V1, HS110_V2)}

# What the meter reads while the relay is on (off: no current, no power).
VOLTAGE_V, CURRENT_A, POWER_W, TOTAL_KWH = 230.1, 0.512, 117.8, 1.234


@dataclass
class Faults:
    """Misbehaviour to switch on; tests may change it while the plug runs."""

    error_position: Literal["natural", "module", "method"] = "natural"
    split_reply: int = 0  # send replies in pieces of this many bytes (0: one write)
    close_mid_reply: int = 0  # cut this many next replies in half and close
    strict_length: bool = True  # newer firmware: drop messages whose prefix is wrong
    silent: bool = False  # accept TCP connections but never answer
    stuck_relay: bool = False  # acknowledge set_relay_state without switching


@dataclass
class SimulatedPlug:
    hardware: Hardware = HS110_V2
    host: str = "127.0.0.1"
    alias: str = "node-a"
    faults: Faults = field(default_factory=Faults)
    clock: Callable[[], float] = time.monotonic
    idle_s: float = 0.2  # strict firmware waits this long for a short message, then drops it
    relay_state: int = 0
    led_off: int = 0
    port: int = 0
    requests: list[Json] = field(default_factory=list)
    reboots: list[int] = field(default_factory=list)
    dropped: int = 0
    _on_since: float = 0.0
    _server: asyncio.Server | None = None
    _transports: list[asyncio.DatagramTransport] = field(default_factory=list)

    # --- what the firmware answers (pure) -------------------------------------------------

    def sysinfo(self) -> Json:
        hw = self.hardware
        info: Json = {
            "sw_ver": hw.sw_ver, "hw_ver": hw.hw_ver, "type": "IOT.SMARTPLUGSWITCH",
            "model": hw.model, "mac": "50:C7:BF:00:11:22", "dev_name": "Wi-Fi Smart Plug",
            "alias": self.alias, "relay_state": self.relay_state,
            "on_time": int(self.clock() - self._on_since) if self.relay_state else 0,
            "active_mode": "none", "feature": "TIM:ENE" if hw.emeter else "TIM",
            "updating": 0, "icon_hash": "", "rssi": -58, "led_off": self.led_off,
            "deviceId": "8006" + "0" * 36, "hwId": "0" * 32, "fwId": "0" * 32,
            "oemId": "0" * 32, "err_code": 0,
        }
        if hw.hw_ver == "1.0":
            info |= {"latitude": 52.5, "longitude": 13.4}
        else:
            info |= {"latitude_i": 525000, "longitude_i": 134000, "next_action": {"type": -1}}
        return info

    def realtime(self) -> Json:
        on = bool(self.relay_state)
        current, power = (CURRENT_A, POWER_W) if on else (0, 0)
        if self.hardware.emeter == 1:
            return {"voltage": VOLTAGE_V, "current": current, "power": power,
                    "total": TOTAL_KWH, "err_code": 0}
        return {"voltage_mv": round(VOLTAGE_V * 1000), "current_ma": round(current * 1000),
                "power_mw": round(power * 1000), "total_wh": round(TOTAL_KWH * 1000),
                "err_code": 0}

    def handle(self, request: Json) -> Json:
        """The reply to one decoded request, as the firmware builds it."""
        self.requests.append(request)
        reply: Json = {}
        for module, methods in request.items():
            handlers = self._handlers().get(module)
            if handlers is None or not isinstance(methods, dict):
                reply[module] = self._error(-1, "module not support", methods)
                continue
            section: Json = {}
            for method, args in methods.items():
                handler = handlers.get(method)
                if handler is None:
                    error = self._error(-2, "member not support", {method: args})
                    if "err_code" in error:  # module level: the whole section is the error
                        section = error
                        break
                    section |= error
                    continue
                result = handler(args if isinstance(args, dict) else {})
                if result.get("err_code") and self.faults.error_position == "module":
                    section = {"err_code": result["err_code"], "err_msg": result["err_msg"]}
                    break
                section[method] = result
            reply[module] = section
        return reply

    def _error(self, code: int, message: str, methods: object) -> Json:
        position = self.faults.error_position
        if position == "natural":
            position = "module" if code == -1 else "method"
        if position == "module" or not isinstance(methods, dict) or not methods:
            return {"err_code": code, "err_msg": message}
        return {method: {"err_code": code, "err_msg": message} for method in methods}

    def _handlers(self) -> dict[str, dict[str, Callable[[Json], Json]]]:
        ok: Callable[[Json], Json] = lambda _args: {"err_code": 0}  # noqa: E731
        system = {
            "get_sysinfo": lambda _args: self.sysinfo(),
            "set_relay_state": self._set_relay_state,
            "set_led_off": self._set_led_off,
            "set_dev_alias": self._set_dev_alias,
            "reboot": self._reboot,
            "reset": ok, "set_dev_location": ok, "set_dev_icon": ok,
            "get_dev_icon": lambda _args: {"icon": "", "hash": "", "err_code": 0},
            "download_firmware": ok, "flash_firmware": ok, "set_test_mode": ok,
            "set_mac_addr": ok, "set_device_id": ok, "set_hw_id": ok,
        }
        handlers: dict[str, dict[str, Callable[[Json], Json]]] = {"system": system}
        if self.hardware.emeter:
            handlers["emeter"] = {"get_realtime": lambda _args: self.realtime()}
        return handlers

    @staticmethod
    def _invalid() -> Json:
        return {"err_code": -3, "err_msg": "invalid argument"}

    def _set_relay_state(self, args: Json) -> Json:
        state = args.get("state")
        if state not in (0, 1) or isinstance(state, bool):
            return self._invalid()
        if not self.faults.stuck_relay and state != self.relay_state:
            self.relay_state, self._on_since = state, self.clock()
        return {"err_code": 0}

    def _set_led_off(self, args: Json) -> Json:
        if args.get("off") not in (0, 1):
            return self._invalid()
        self.led_off = args["off"]
        return {"err_code": 0}

    def _set_dev_alias(self, args: Json) -> Json:
        if not isinstance(args.get("alias"), str):
            return self._invalid()
        self.alias = args["alias"]
        return {"err_code": 0}

    def _reboot(self, args: Json) -> Json:
        if not isinstance(args.get("delay"), int):
            return self._invalid()
        self.reboots.append(args["delay"])
        return {"err_code": 0}

    # --- the network (TCP and UDP on the same port number) --------------------------------

    async def start(self, port: int = 0) -> None:
        for _ in range(20):
            server = await asyncio.start_server(self._serve, self.host, port)
            self.port = server.sockets[0].getsockname()[1]
            try:
                await self._start_udp()
            except OSError:
                server.close()
                await server.wait_closed()
                if port:
                    raise
                continue
            self._server = server
            return
        raise OSError("no port free for both TCP and UDP")

    async def _start_udp(self) -> None:
        loop = asyncio.get_running_loop()
        unicast, _ = await loop.create_datagram_endpoint(
            lambda: _Udp(self, None), local_addr=(self.host, self.port))
        self._transports.append(unicast)
        if self.host.startswith("127."):  # also hear broadcasts to 127.255.255.255:port
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.255.255.255", self.port))
            broadcast, _ = await loop.create_datagram_endpoint(
                lambda: _Udp(self, unicast), sock=sock)
            self._transports.append(broadcast)

    async def stop(self) -> None:
        for transport in self._transports:
            transport.close()
        self._transports.clear()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 1)
            self._server = None

    async def __aenter__(self) -> SimulatedPlug:
        await self.start(self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (payload := await self._read_message(reader)) is not None:
                if self.faults.silent:
                    await reader.read()  # until the client gives up
                    break
                try:
                    request = json.loads(xor_decrypt(payload))
                except ValueError:  # a wrong prefix cut the JSON: drop it
                    self.dropped += 1
                    break
                data = frame(self.handle(request))
                if self.faults.close_mid_reply > 0:
                    self.faults.close_mid_reply -= 1
                    writer.write(data[: len(data) // 2])
                    await writer.drain()
                    break
                step = self.faults.split_reply or len(data)
                for start in range(0, len(data), step):
                    writer.write(data[start:start + step])
                    await writer.drain()
                    if self.faults.split_reply:
                        await asyncio.sleep(0.002)  # separate TCP segments
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _read_message(self, reader: asyncio.StreamReader) -> bytes | None:
        try:
            (declared,) = struct.unpack(">I", await reader.readexactly(4))
        except asyncio.IncompleteReadError:
            return None
        if not self.faults.strict_length:  # old firmware: takes whatever arrived
            return await reader.read(65536)
        payload = b""
        try:
            while len(payload) < declared:
                chunk = await asyncio.wait_for(reader.read(declared - len(payload)), self.idle_s)
                if not chunk:
                    return None
                payload += chunk
        except TimeoutError:
            self.dropped += 1  # prefix longer than the message: newer firmware drops it
            return None
        return payload


class _Udp(asyncio.DatagramProtocol):
    """Discovery: answer any encrypted request without a length prefix."""

    def __init__(self, plug: SimulatedPlug, reply_via: asyncio.DatagramTransport | None) -> None:
        self.plug = plug
        self.reply_via = reply_via
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if self.plug.faults.silent:
            return
        try:
            request = json.loads(xor_decrypt(data))
        except ValueError:
            return
        if isinstance(request, dict):
            out = self.reply_via or self.transport
            assert out is not None
            out.sendto(xor_encrypt(json.dumps(self.plug.handle(request)).encode()), addr)


@contextlib.contextmanager
def refusing_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A port that refuses TCP connections, as KLAP firmware's port 9999 does."""
    with socket.socket() as sock:
        sock.bind((host, 0))  # bound, never listening: connections are refused
        yield sock.getsockname()[1]


@contextlib.contextmanager
def unanswered_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A port whose SYNs go unanswered (full accept queue), like a plug that is off-line."""
    with socket.socket() as sock, socket.socket() as filler:
        sock.bind((host, 0))
        sock.listen(0)
        filler.connect(sock.getsockname())  # fills the queue of one
        yield sock.getsockname()[1]


class SimulatorThread:
    """Runs simulated plugs in an event loop on a background thread, for synchronous tests."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._plugs: list[SimulatedPlug] = []

    def __enter__(self) -> SimulatorThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 5) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start_plug(
        self, hardware: Hardware = HS110_V2, *, port: int = 0, **kwargs: Any
    ) -> SimulatedPlug:
        plug = SimulatedPlug(hardware, **kwargs)
        self.run(plug.start(port))
        self._plugs.append(plug)
        return plug

    def stop_all(self) -> None:
        while self._plugs:
            self.run(self._plugs.pop().stop())


async def _serve_forever(args: argparse.Namespace) -> None:
    faults = Faults(split_reply=args.split_reply, strict_length=not args.lenient,
                    error_position=args.error_position)
    async with SimulatedPlug(PROFILES[args.model], host=args.host, port=args.port,
                             alias=args.alias, faults=faults) as plug:
        print(f"{plug.hardware.model} hw {plug.hardware.hw_ver} on {plug.host}:{plug.port}"
              " (TCP and UDP); Ctrl-C stops", flush=True)
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(PROFILES), default="hs110-v2")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9999)
    parser.add_argument("--alias", default="node-a")
    parser.add_argument("--split-reply", type=int, default=0, metavar="BYTES")
    parser.add_argument("--lenient", action="store_true", help="accept wrong length prefixes")
    parser.add_argument("--error-position", choices=("natural", "module", "method"),
                        default="natural")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(parser.parse_args()))


if __name__ == "__main__":
    main()
