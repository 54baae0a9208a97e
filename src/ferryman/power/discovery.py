"""Find plugs by UDP: the encrypted get_sysinfo, without length prefix, to port 9999 of a
broadcast address; every plug answers from its port 9999, also without prefix."""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass

from ferryman.power.address import PlugAddress
from ferryman.power.codec import SYSINFO_REQUEST, decode_datagram, encode_datagram, method_result
from ferryman.power.device import SysInfo
from ferryman.power.errors import PlugUnreachable, PowerError

log = logging.getLogger(__name__)

BROADCAST = PlugAddress("255.255.255.255")
DEFAULT_DISCOVERY_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class DiscoveredPlug:
    address: PlugAddress
    sysinfo: SysInfo


class _Collector(asyncio.DatagramProtocol):
    """Keeps the first datagram from each sender."""

    def __init__(self) -> None:
        self.datagrams: dict[tuple[str, int], bytes] = {}

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        host, port = str(addr[0]), addr[1]
        if isinstance(port, int):
            self.datagrams.setdefault((host, port), data)

    def error_received(self, exc: Exception) -> None:
        log.debug("discovery socket error: %s", exc)


def parse_discovery_reply(sender: PlugAddress, datagram: bytes) -> DiscoveredPlug:
    """A plug's answer to the discovery datagram. Raises PowerError if it is not one."""
    reply = decode_datagram(datagram)
    return DiscoveredPlug(sender, SysInfo.from_json(method_result(reply, "system", "get_sysinfo")))


async def discover(
    target: PlugAddress = BROADCAST,
    *,
    listen_s: float = DEFAULT_DISCOVERY_TIMEOUT_S,
    packets: int = 3,
) -> list[DiscoveredPlug]:
    """Send the discovery datagram ``packets`` times (UDP loses some), collect answers for
    ``listen_s`` seconds, and return the plugs sorted by address. Bad answers are skipped."""
    if listen_s <= 0 or packets < 1:
        raise ValueError("listen_s must be > 0 and packets >= 1")
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(target.host, target.port, family=socket.AF_INET,
                                       type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise PlugUnreachable(f"cannot resolve {target.host!r}: {exc.strerror}",
                              plug=str(target)) from exc
    sockaddr = infos[0][4]
    deadline = loop.time() + listen_s
    spacing = min(0.2, listen_s / (2 * packets))
    datagram = encode_datagram(SYSINFO_REQUEST)
    transport, collector = await loop.create_datagram_endpoint(
        _Collector, family=socket.AF_INET, allow_broadcast=True
    )
    try:
        for _ in range(packets):
            try:
                transport.sendto(datagram, sockaddr)
            except OSError as exc:
                raise PlugUnreachable(f"cannot send the discovery datagram: {exc.strerror}",
                                      plug=str(target)) from exc
            await asyncio.sleep(spacing)
        await asyncio.sleep(max(0.0, deadline - loop.time()))
    finally:
        transport.close()
    found: list[DiscoveredPlug] = []
    for (host, port), data in collector.datagrams.items():
        sender = PlugAddress(host, port)
        try:
            found.append(parse_discovery_reply(sender, data))
        except PowerError as exc:
            log.info("ignoring a discovery answer from %s: %s", sender, exc.one_line())
    return sorted(found, key=lambda plug: (plug.address.host, plug.address.port))
