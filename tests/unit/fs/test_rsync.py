"""rsync's argv both ways, the server-side check of a tunnel's request, and its messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from ferryman.errors import SyncError
from ferryman.fs.rsync import (
    bytes_sent,
    client_argv,
    rsync_reason,
    server_argv,
    tunnel_rsh,
)

ALLOWED = {"bundle": Path("/var/lib/ferryman/bundles/c1/bundle")}
HERE = "/var/lib/ferryman/bundles/c1/bundle/"
FLAGS = "-lHogDtpre.iLsfxCIvu"


def test_client_argv_phase_one_and_two() -> None:
    one = client_argv(Path("/srv/b/c1"), "10.0.0.2", dest="bundle", rsh=["py", "tunnel"],
                      delete=False)
    assert one == ["rsync", "-aH", "--numeric-ids", "--stats", "--exclude=cr-tmpfs.??????/",
                   "-e", "py tunnel", "/srv/b/c1/", "10.0.0.2:bundle/"]
    two = client_argv(Path("/srv/b/c1/"), "10.0.0.2", dest="rootfs", rsh=["py"], delete=True)
    assert "--delete" in two
    assert two[-2:] == ["/srv/b/c1/", "10.0.0.2:rootfs/"]
    with pytest.raises(SyncError):
        client_argv(Path("/srv/b/c1"), "h", dest="/etc", rsh=["x"], delete=False)


def test_what_rsync_asks_for_is_accepted() -> None:
    # What rsync 3.2 hands its remote shell for client_argv's options.
    remote = ["rsync", "--server", FLAGS, "--delete", "--numeric-ids", "--stats", ".",
              "bundle/"]
    assert server_argv(remote, ALLOWED) == [*remote[:-1], HERE]


@pytest.mark.parametrize(("remote", "why"), [
    (["rsync", "--server", "--sender", FLAGS, ".", "bundle/"], "unexpected"),
    (["rsync", "--server", FLAGS, "--remove-source-files", ".", "bundle/"], "not allowed"),
    (["rsync", "--server", FLAGS, ".", "/etc/"], "not part of the planned migration"),
    (["rsync", "--server", FLAGS, ".", HERE], "not part of the planned migration"),
    (["rsync", "--server", FLAGS, ".", "bundle/../../etc"], "not part of the planned"),
    (["rsync", "--server", FLAGS, ".", "rootfs/"], "not part of the planned migration"),
    (["rsync", "--server", "-la;rm", ".", "bundle/"], "unexpected"),
    # only the letters of client_argv's -aH: no --keep-dirlinks (K), --copy-links (L) ...
    (["rsync", "--server", "-lHogDtpKre.iLsfxCIvu", ".", "bundle/"], "unexpected"),
    (["rsync", "--server", "-lHogDtpLre.iLsfxCIvu", ".", "bundle/"], "unexpected"),
    (["sh", "-c", "id", ".", "bundle/"], "not an rsync receiver"),
    (["rsync", "--server"], "not an rsync receiver"),
])
def test_anything_else_is_refused(remote: list[str], why: str) -> None:
    with pytest.raises(SyncError, match=why):
        server_argv(remote, ALLOWED)


def test_only_absolute_paths_without_dotdot() -> None:
    for bad in ("relative/dir", "/a/../b"):
        with pytest.raises(SyncError):
            client_argv(Path(bad), "h", dest="bundle", rsh=["x"], delete=False)


def test_tunnel_rsh_refuses_words_rsync_would_split() -> None:
    rsh = tunnel_rsh(4000, Path("/pki/ca.pem"), Path("/pki/a.pem"), Path("/pki/a.key"),
                     python="/usr/bin/python3")
    assert rsh[:3] == ["/usr/bin/python3", "-I", "-S"]
    assert rsh[4:6] == ["--dead-link", "2,1,3,5000"]  # the control channel's bound
    assert rsh[-8:] == ["--port", "4000", "--ca", "/pki/ca.pem", "--cert", "/pki/a.pem",
                        "--key", "/pki/a.key"]
    with pytest.raises(SyncError):
        tunnel_rsh(4000, Path("/my pki/ca.pem"), Path("/a"), Path("/k"))


def test_stats_and_reasons() -> None:
    assert bytes_sent("Number of files: 12\nTotal bytes sent: 2,046,554\n") == 2046554
    assert bytes_sent("nothing") == 0
    err = ("rsync: [receiver] mkstemp \"/srv/b/c1/.x\" failed: No space left on device (28)\n"
           "rsync error: some files could not be transferred (code 23) at main.c(1338)\n")
    assert rsync_reason(err, 23).startswith("rsync: [receiver] mkstemp")
    assert "code 23" in rsync_reason(err, 23)
    assert rsync_reason("", 12) == "rsync exited with status 12"
