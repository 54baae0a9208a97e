"""Parsing /proc/net: inet tables, local addresses, port conflicts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ferryman.host import netinfo
from ferryman.host.netinfo import InetSocket

pytestmark = pytest.mark.skipif(sys.byteorder != "little", reason="samples from x86-64")

# Real lines, with the columns we do not read shortened (tx/rx queues, timers).
TCP = """\
  sl  local_address rem_address   st tx:rx tr:when retrnsmt   uid  timeout inode
   0: 0100000A:2383 00000000:0000 0A 0:0 00:0 00000000     0        0 4242 1 0
   1: 0100007F:C350 0900000A:0050 01 0:0 00:0 00000000     0        0 4343 1 0
   2: garbage
   3: 0100007F:ZZZZ 0900000A:0050 01 0:0 00:0 00000000     0        0 1 1 0
"""
TCP6 = """\
  sl  local_address                         remote_address                        st ...
0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 0:0 00:0 0 0 0 77
1: 00000000000000000000000001000000:1F90 00000000000000000000000001000000:A000 01 0:0 00:0 0 0 0 78
2: 0000000000000000FFFF00000100000A:0050 00000000000000000000000000000000:0000 0A 0:0 00:0 0 0 0 79
"""
UDP = """\
   sl  local_address rem_address   st tx:rx tr:when retrnsmt   uid  timeout inode ref
  123: 00000000:0035 00000000:0000 07 0:0 00:0 00000000     0        0 88 2 0 0
  124: 0100007F:0035 0200007F:1000 01 0:0 00:0 00000000     0        0 89 2 0 0
"""
FIB_TRIE = """\
Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 10.77.0.0/24 2 0 2
           |-- 10.77.0.0
              /24 link UNICAST
           |-- 10.77.0.2
              /32 host LOCAL
"""
IF_INET6 = """\
00000000000000000000000000000001 01 80 10 80       lo
fd000000000000000000000000000002 04 40 00 82     eth0
zz 04 40 00 82 eth0
"""


def test_tcp_table() -> None:
    socks = netinfo.parse_inet_table(TCP, "tcp")
    assert socks == [
        InetSocket("tcp", "10.0.0.1", 9091, "0.0.0.0", 0, "LISTEN", 4242),
        InetSocket("tcp", "127.0.0.1", 50000, "10.0.0.9", 80, "ESTABLISHED", 4343),
    ]
    assert socks[0].binds
    assert not socks[0].wildcard
    assert not socks[1].binds


def test_tcp6_table_and_mapped_addresses() -> None:
    socks = netinfo.parse_inet_table(TCP6, "tcp")
    assert [(s.local_ip, s.local_port, s.state) for s in socks] == [
        ("::", 22, "LISTEN"), ("::1", 8080, "ESTABLISHED"), ("10.0.0.1", 80, "LISTEN")]
    assert socks[0].wildcard


def test_udp_table() -> None:
    socks = netinfo.parse_inet_table(UDP, "udp")
    assert [(s.local_ip, s.local_port, s.state, s.binds) for s in socks] == [
        ("0.0.0.0", 53, "BOUND", True), ("127.0.0.1", 53, "ESTABLISHED", False)]


def test_local_networks() -> None:
    nets = netinfo.parse_fib_trie(FIB_TRIE) | netinfo.parse_if_inet6(IF_INET6)
    assert nets == {"127.0.0.0/8", "127.0.0.1/32", "10.77.0.2/32", "::1/128", "fd00::2/128"}
    assert netinfo.is_local("127.3.4.5", nets)
    assert netinfo.is_local("10.77.0.2", nets)
    assert not netinfo.is_local("10.77.0.1", nets)
    assert netinfo.is_local("fd00::2", nets)
    assert not netinfo.is_local("fd00::3", nets)


def test_readers_use_the_given_namespace_directory(tmp_path: Path) -> None:
    (tmp_path / "tcp").write_text(TCP)
    (tmp_path / "udp").write_text(UDP)
    (tmp_path / "fib_trie").write_text(FIB_TRIE)
    socks = netinfo.read_inet_sockets(tmp_path)  # no tcp6/udp6: an IPv6-less kernel
    assert len(socks) == 4
    assert netinfo.local_networks(tmp_path) == {"127.0.0.0/8", "127.0.0.1/32", "10.77.0.2/32"}


def test_our_own_namespace_is_readable() -> None:
    nets = netinfo.local_networks(Path("/proc/self/net"))
    assert netinfo.is_local("127.0.0.1", nets)
    netinfo.read_inet_sockets(Path("/proc/self/net"))


def test_conflicts() -> None:
    ours = InetSocket("tcp", "0.0.0.0", 80, "0.0.0.0", 0, "LISTEN")
    there = [InetSocket("tcp", "10.0.0.2", 80, "0.0.0.0", 0, "LISTEN"),
             InetSocket("tcp", "10.0.0.2", 80, "1.1.1.1", 5, "ESTABLISHED"),
             InetSocket("udp", "10.0.0.2", 80, "0.0.0.0", 0, "BOUND")]
    assert netinfo.conflicts(ours, there) == there[:1]
    connected = InetSocket("tcp", "10.0.0.2", 80, "1.1.1.1", 5, "ESTABLISHED")
    assert netinfo.conflicts(connected, there) == []

