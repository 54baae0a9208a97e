"""The DESTINATION's page servers and image sets: where a dump's pages are received.

CRIU's page server for each dump, behind a guard that only the source reaches; pre-copy's
image sets ``pre-1``..``pre-N`` and the final one; the page maps sent back before a lazy final
set; the answer to each Iterate (with the restore read rate measured on set 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from ferryman import wire
from ferryman.agent import pagerelay
from ferryman.agent.destination_end import guarded_port, remove_guards
from ferryman.agent.destination_lazy import start_lazy_relay
from ferryman.agent.destination_role import DestinationRole
from ferryman.agent.files import EMPTY_SHA256, file_messages, set_name
from ferryman.agent.hello import node_features
from ferryman.criu import page_server
from ferryman.errors import CriuFeatureMissing, FerrymanError, PeerLost
from ferryman.migration.plan import postcopy_blocker
from ferryman.pki import tls


def read_rate(images: Path, chunk: int = 4 << 20) -> int:
    """Bytes per second reading an image set's page files into fresh memory; 0 if empty.

    A restore reads every page from the image chain into memory the new process has never
    touched: each chunk goes into a new buffer, so the page faults of that memory count too.
    """
    total = 0
    t0 = time.monotonic()
    for p in images.glob("pages-*.img"):
        with p.open("rb", buffering=0) as fh:
            while n := fh.readinto(bytearray(chunk)):
                total += n
    took = time.monotonic() - t0
    return int(total / took) if total and took > 0 else 0


async def lazy_blocker(s: DestinationRole) -> str | None:
    """Why lazy pages cannot work on this node, or None."""
    _, features = await node_features(s.criu, s.cfg.state_dir,
                                      s.cfg.hidden_features)
    return postcopy_blocker(features, s.cfg.name)


async def start_page_server(s: DestinationRole, images: Path, parent: str | None) -> int:
    """CRIU's page server for one dump, behind a guard that lets only the source (the
    control connection's address) reach it: it serves the first connection it gets.
    A cold Plan with ``compress``: the port is the page relay's (agent/pagerelay.py), which
    feeds the page server through a socket pair."""
    port = await guarded_port(s)
    if s.seal is not None:  # each file it writes, hashed while it writes it
        s.seal.follow(images)
    if s.plan is not None and s.plan.compress and parent is None and not s.plan.lazy_dump:
        theirs, ours = pagerelay.socket_pair()
        try:
            s.page_server = await page_server.start_socket_page_server(
                s.criu.binary, images, theirs.fileno())
        finally:
            theirs.close()  # the page server's now: its exit is the relay's end of stream
        s.relay = pagerelay.RelayServer(tls.server_context(s.cfg.creds), s.ch.peer, ours,
                                        s.page_server.proc.wait)
        await s.relay.start(s.cfg.listen_host, port)
        return port
    s.page_server = await page_server.start_page_server(s.criu.binary, images,
                                                        s.cfg.listen_host, port, s.tls,
                                                        parent=parent)
    return port


async def open_set(s: DestinationRole, msg: wire.Iterate | None) -> int:
    """Pre-copy: the page server for the next image set, once the last one is complete.

    Sets ``pre-1``..``pre-N`` are pre-dumps, each the child of the one before; the final
    set is the migration directory itself (its ``parent`` is ``pre-N``). A lazy final set
    gets no page server: its memory stays at the source until the restore asks.
    ``msg`` None: the Plan's first set.
    """
    assert s.workdir is not None
    if s.page_server is not None:  # the last pre-dump's pages are all written
        await page_server_exit(s)
        s.page_server = None
        await remove_guards(s)
    if msg is None:
        s.sets = 1
        (s.workdir / set_name(1)).mkdir()
        return await start_page_server(s, s.workdir / set_name(1), None)
    if msg.index != s.sets + 1:
        raise FerrymanError(f"image set {msg.index} announced after set {s.sets}")
    parent = set_name(s.sets)
    if not msg.final:
        s.sets = msg.index
        images = s.workdir / set_name(msg.index)
        images.mkdir()
        return await start_page_server(s, images, f"../{parent}")
    if msg.lazy:
        if (why := await lazy_blocker(s)) is not None:
            raise CriuFeatureMissing("lazy pages", why)
        (s.workdir / "parent").symlink_to(parent)
        await send_page_maps(s)
        # through the page relay, its port; else the source's lazy dump listens
        return await start_lazy_relay(s) if s.plan is not None and s.plan.lazy_relay else 0
    return await start_page_server(s, s.workdir, parent)


async def page_server_exit(s: DestinationRole) -> None:
    """The page server's clean exit: every page of its image set is written. PeerLost as
    soon as the source closes the connection instead: nobody will dump into it then, and
    the migration must not stay (a root criu process, its images) until the timeout."""
    assert s.page_server is not None
    exited = asyncio.ensure_future(s.page_server.wait(s.cfg.timeouts.page_server_exit))
    gone = asyncio.ensure_future(s.ch.wait_peer_closed())
    try:
        await asyncio.wait({exited, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (exited, gone) if not exited.done() else (gone,):
            task.cancel()
        await asyncio.gather(exited, gone, return_exceptions=True)
    if exited.cancelled():
        raise PeerLost(s.ch.peer, f"{s.ch.peer} closed the connection while its "
                       "page server was waiting for pages")
    exited.result()
    if s.seal is not None:  # every page it received is written: sealed as written
        await asyncio.to_thread(s.seal.settle)


async def send_page_maps(s: DestinationRole) -> None:
    """Before a lazy final set: the page maps of every set, back to the source.

    The source's lazy dump reads them (with empty page files: it never reads a page) to
    mark what the destination already has; without them it would serve every page again.
    Sent as ``pre-K.NAME``.
    """
    assert s.workdir is not None
    for k in range(1, s.sets + 1):
        images = s.workdir / set_name(k)
        for p in sorted(images.glob("pagemap-*.img")):
            for m in file_messages(p, f"{images.name}.{p.name}"):
                await s.ch.send(m)
        for p in sorted(images.glob("pages-*.img")):
            await s.ch.send(wire.FileEnd(name=f"{images.name}.{p.name}", size=0,
                                         sha256=EMPTY_SHA256))


async def answer_iterate(s: DestinationRole, msg: wire.Iterate) -> None:
    try:
        port = await open_set(s, msg)
        rate = 0
        if msg.index == 2 and s.workdir is not None:  # set 1 is complete now
            rate = await asyncio.to_thread(read_rate, s.workdir / set_name(1))
    except (FerrymanError, OSError) as exc:
        text = getattr(exc, "message", str(exc))
        with contextlib.suppress(FerrymanError):
            await s.ch.send(wire.Error(code="page-server", message=text[:4000]))
        raise
    await s.ch.send(wire.Ready(page_server_port=port, restore_bytes_per_s=rate))
