"""One exception tree for ferryman.

Every error carries fields, not prose to parse, and a ``hint`` that tells the user what to
do. OS, CRIU and library errors are translated at the I/O boundaries with ``raise ... from``.

    FerrymanError                      (hint, exit_code)
    ├── UsageError                     bad command-line input
    ├── NoSuchProcess                  (pid)
    ├── CriuError                      (action, errno, log_path, reason)
    │   ├── CriuMissing                criu not installed / too old
    │   └── CriuFeatureMissing         (feature)
    ├── PeerError                      (peer)
    │   ├── PeerUnreachable            connect refused / timed out
    │   ├── PeerRejected               TLS handshake / certificate refused
    │   └── PeerLost                   the control connection broke mid-migration
    ├── ProtocolError                  malformed or out-of-order control messages
    │   ├── LocalProtocolError         we broke the protocol (a bug on our side)
    │   └── RemoteProtocolError        the peer broke it
    ├── RemoteError                    (peer, code) the peer reported a failure
    ├── MigrationRolledBack            (reason) the workload runs on the source again
    ├── WorkloadLost                   (pid, reason) post-copy tail broke: memory is gone
    ├── PkiError                       (path) certificates/keys missing or invalid
    ├── PowerError                     smart-plug control (see ferryman.power.errors)
    ├── PidControlError                (pid, errno) choosing a process's PID failed
    │   └── PidTaken                   (pid, got) that PID belongs to another process
    ├── ReportError                    (path) a report file cannot be read or drawn
    ├── PreflightFailed                (failed) the pre-flight check rules the move out
    ├── RuncError                      (action, container) runc failed, with its message
    │   ├── RuncMissing                runc is not installed
    │   └── NoSuchContainer            (container) unknown id, or not running
    ├── SyncError                      (path, exit_status) rsync failed, with its message
    ├── ProbeError                     (target) the --probe connection cannot be opened
    ├── Refusal                        (code) the destination refuses a Plan (sent as Refused)
    └── TransferError                  (code) a received image file is inconsistent

Exit codes: 2 usage, 3 no such process, 4 CRIU, 5 peer, 6 protocol, 7 remote failure,
8 rolled back, 9 lost, 10 PKI, 11 report, 12 runc, 13 sync, 14 probe, 20-29 power,
30-31 PID control, 40 pre-flight.
"""

from __future__ import annotations

from errno import EEXIST

from ferryman.safetext import printable


class FerrymanError(Exception):
    """Root of all ferryman errors. ``hint`` says what the user should do."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """The error as a single line for the terminal: what happened, then what to do."""
        text = self.message.replace("\n", " ")
        return printable(f"{text}: {self.hint}" if self.hint else text)


class UsageError(FerrymanError):
    exit_code = 2


class NoSuchProcess(FerrymanError):
    exit_code = 3

    def __init__(self, pid: int) -> None:
        super().__init__(
            f"no process with PID {pid}",
            hint="check the PID with 'ps -p PID' on the source node",
        )
        self.pid = pid


class CriuError(FerrymanError):
    """CRIU failed. ``reason`` is the first error line of CRIU's log, when there is one."""

    exit_code = 4

    def __init__(
        self,
        action: str,
        *,
        errno: int | None = None,
        log_path: str | None = None,
        reason: str | None = None,
        hint: str | None = None,
    ) -> None:
        where = f" (log: {log_path})" if log_path else ""
        why = f": {reason}" if reason else ""
        super().__init__(f"criu {action} failed{why}{where}", hint=hint)
        self.action = action
        self.errno = errno
        self.log_path = log_path
        self.reason = reason


class CriuMissing(CriuError):
    def __init__(self, detail: str) -> None:
        super().__init__(
            "start",
            reason=detail,
            hint="install CRIU >= 4.2 with 'sudo scripts/install-criu.sh'",
        )


class CriuFeatureMissing(CriuError):
    def __init__(self, feature: str, hint: str) -> None:
        super().__init__("feature-check", reason=f"the kernel lacks {feature}", hint=hint)
        self.feature = feature


class PeerError(FerrymanError):
    exit_code = 5

    def __init__(self, peer: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.peer = peer


class PeerUnreachable(PeerError):
    pass


class PeerRejected(PeerError):
    pass


class PeerLost(PeerError):
    pass


class ProtocolError(FerrymanError):
    exit_code = 6


class LocalProtocolError(ProtocolError):
    pass


class RemoteProtocolError(ProtocolError):
    pass


class RemoteError(FerrymanError):
    """The peer reported a failure in an ``Error``/``Failed`` message."""

    exit_code = 7

    def __init__(self, peer: str, code: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{peer}: {message}", hint=hint)
        self.peer = peer
        self.code = code


class MigrationRolledBack(FerrymanError):
    """The migration failed before the point of no return; the workload runs on the source."""

    exit_code = 8

    def __init__(self, reason: str, *, hint: str | None = None, cause_code: str = "") -> None:
        super().__init__(f"migration rolled back, workload still runs on the source: {reason}",
                         hint=hint)
        self.reason = reason
        self.cause_code = cause_code


class WorkloadLost(FerrymanError):
    """Post-copy: the destination runs the workload but could not get all of its memory."""

    exit_code = 9

    def __init__(self, pid: int, reason: str, *, served_all: bool = False) -> None:
        """``served_all``: the destination's lazy-pages daemon had closed its session in
        order before the failure, which it does once every page went (or once its restored
        tasks died): the copy there may run whole, and the operator should look first."""
        hint = ("the destination's lazy-pages daemon had closed its session in order (every "
                "page it asked for was sent), so the copy there may run whole: look there "
                "first ('ferryman orphans', 'ps'), else restart it from its own state"
                if served_all else
                "its memory was split between the nodes; restart it from its own state")
        super().__init__(
            f"workload (source PID {pid}) LOST during the post-copy page transfer: {reason}",
            hint=hint,
        )
        self.pid = pid
        self.reason = reason
        self.served_all = served_all


class PkiError(FerrymanError):
    exit_code = 10

    def __init__(self, path: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{path}: {message}", hint=hint)
        self.path = path


class PidControlError(FerrymanError):
    """Choosing the PID of a new process failed (see ferryman.host.pidctl)."""

    exit_code = 30

    def __init__(self, message: str, *, pid: int | None = None, errno: int | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.pid = pid
        self.errno = errno


class PidTaken(PidControlError):
    """``pid`` is in use; ``got`` is the PID our child got instead (ns_last_pid race)."""

    exit_code = 31

    def __init__(self, pid: int, *, got: int | None = None) -> None:
        if got is None:
            message = f"PID {pid} is taken by another process"
        else:
            message = f"PID {pid} was taken by another process while ours started (it got {got})"
        super().__init__(message, pid=pid, errno=EEXIST,
                         hint="free that PID or choose another; see 'ps -p PID'")
        self.got = got


class ReportError(FerrymanError):
    """A migration report file could not be read or drawn (see ferryman.report)."""

    exit_code = 11

    def __init__(self, path: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{path}: {message}", hint=hint)
        self.path = path


class PreflightFailed(FerrymanError):
    """The pre-flight check rules the migration out (``failed``: the check ids that did);
    nothing was frozen for it."""

    exit_code = 40

    def __init__(self, message: str, *, failed: list[str], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.failed = failed


class RuncError(FerrymanError):
    """runc failed; ``message`` quotes runc's own error text."""

    exit_code = 12

    def __init__(self, action: str, container: str, reason: str, *,
                 hint: str | None = None) -> None:
        super().__init__(f"runc {action} {container} failed: {reason}", hint=hint)
        self.action = action
        self.container = container
        self.reason = reason


class RuncMissing(RuncError):
    def __init__(self, binary: str, node: str = "this node") -> None:
        super().__init__("start", "", f"{binary} is not installed on {node}",
                         hint="install Debian's runc package ('make setup' does)")
        self.message = f"runc ({binary}) is not installed on {node}"
        self.binary = binary


class NoSuchContainer(RuncError):
    """No container with that id, or it is not running (``status`` says what runc said)."""

    exit_code = 3

    def __init__(self, container: str, status: str | None = None, root: str = "") -> None:
        where = f" (runc root {root})" if root else ""
        if status is None:
            reason = f"no runc container with id {container!r}{where}"
            hint = "check the id with 'runc list' (and --runc-root) on the source node"
        else:
            reason = f"runc container {container!r} is {status}, not running"
            hint = "only a running container can move: start it, or resume it"
        super().__init__("state", container, reason, hint=hint)
        self.message = reason
        self.status = status


class PodmanError(RuncError):
    """podman failed, or its state is not what ferryman can move; ``reason`` quotes it."""

    def __init__(self, action: str, container: str, reason: str, *,
                 hint: str | None = None) -> None:
        super().__init__(action, container, reason, hint=hint)
        self.message = f"podman {action} {container} failed: {reason}".replace("  ", " ")


class SyncError(FerrymanError):
    """Directory sync failed; ``reason`` is rsync's own message."""

    exit_code = 13

    def __init__(self, path: str, reason: str, *, exit_status: int | None = None,
                 hint: str | None = None) -> None:
        super().__init__(f"syncing {path} failed: {reason}",
                         hint=hint or "see rsync's message; check disk space and permissions "
                                      "on the destination")
        self.path = path
        self.reason = reason
        self.exit_status = exit_status


class ProbeError(FerrymanError):
    """The client-observed downtime probe (``--probe``) cannot talk to its service."""

    exit_code = 14

    def __init__(self, target: str, reason: str, *, hint: str | None = None) -> None:
        super().__init__(f"probe {target}: {reason}",
                         hint=hint or "check that the service answers at that address "
                                      "(a line for every line it gets)")
        self.target = target
        self.reason = reason


class FileLockBusy(FerrymanError):
    """The restore waited for a file lock someone on the destination holds."""

    exit_code = 4


class Refusal(FerrymanError):
    """The destination refuses a Plan before anything is set up for it; ``code`` (mode, busy,
    address, feature, duplicate, cpu, runc, page-server) goes back in ``wire.Refused``. It
    never reaches a terminal of this node: the source reports it as a RemoteError."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class TransferError(FerrymanError):
    """A received image file is inconsistent (``code``: checksum, order, name, disk_full,
    io); the receiving side answers ``Failed(code)``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
