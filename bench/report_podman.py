"""The Markdown report's Podman section: ferryman vs Podman's own export/import, and where
ferryman's client gap goes (its source's phases, the client beyond ferryman's downtime)."""

from __future__ import annotations

import statistics
from typing import Any

from bench.stats import BY_HAND, FERRYMAN, PODMAN_GAP_GOAL, PODMAN_MODES

TITLES = {
    "podman-echo": "S3, Podman: the echo server as a Podman container, client in C every 10 ms",
    "podman-redis": "S2, Podman: redis-server with 10^6 keys as a Podman container, under "
                    "load from C",
}
NOTES = [
    "Podman (podman-echo, podman-redis; bench/podmanbox.py): each run gets two Podman states "
    "(tests/support/podman.py: own graph root, run root, runc root, cgroupfs), the image "
    "imported into both (`podman import`: busybox-static; for redis this host's redis-server "
    "and the libraries ldd names), the container started on A with `--network host` and a "
    "relative cgroup parent; B's agent and B's podman run in a mount namespace of their own "
    "(Podman's network state empty) and in cgroups of their own. ferryman: `ferryman migrate "
    "--podman NAME --runc-root ROOT_A --mode MODE --tcp-established --move-address IP/24@eth0`. "
    "Podman's own ('by hand' in the JSON, bench/baseline_podman.py): `podman container "
    "checkpoint --export ARCHIVE --tcp-established NAME` on A, `ip addr del` on A, `cp` of the "
    "archive to B's directory, on B an nftables table dropping the service port, `ip addr add`, "
    "`podman container restore --import ARCHIVE --tcp-established`, the table deleted, `arping "
    "-U`; total until arping started. Podman has no post-copy: both cells run the same "
    "commands (the post-copy cell's Podman column is a second sample of the same move).",
    "Where ferryman's gap goes (medians over its runs): the source's phases inside the frozen "
    "window — FREEZING (`criu dump` via runc: freeze, dump, cold: every page over CRIU's TLS "
    "page server; post-copy: no pages), DUMPED + TRANSFERRING (the images and Podman's "
    "config/rootfs diff), AWAIT_RESTORE (B packs the export layout and runs `podman container "
    "restore --import`, until the restored container runs) — and 'client beyond' = the "
    "client's gap minus ferryman's own downtime (TCP retransmission back-off in C, ARP).",
]


def _med(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _f(v: float | None, unit: str = "") -> str:
    return "-" if v is None else f"{v:.0f}{unit}"


def _ok(runs: list[dict[str, Any]], tool: str) -> list[dict[str, Any]]:
    return [r for r in runs if r.get("tool") == tool and r.get("ok")]


def _detail(runs: list[dict[str, Any]], key: str) -> float | None:
    return _med([float(v) for r in runs
                 if isinstance(v := (r.get("details") or {}).get(key), int | float)])


def _phase(runs: list[dict[str, Any]], *names: str) -> float | None:
    per_run = []
    for r in runs:
        phases = (r.get("details") or {}).get("phases") or []
        got = [float(p["duration_ms"]) for p in phases if p.get("phase") in names]
        if got:
            per_run.append(sum(got))
    return _med(per_run)


def _gap(runs: list[dict[str, Any]]) -> float | None:
    return _med([float(r["downtime_ms"]) for r in runs
                 if isinstance(r.get("downtime_ms"), int | float)])


def _range(runs: list[dict[str, Any]]) -> str:
    vals = sorted(float(r["downtime_ms"]) for r in runs
                  if isinstance(r.get("downtime_ms"), int | float))
    if not vals:
        return "-"
    med = statistics.median(vals)
    return f"{med:.0f}" if len(vals) == 1 else f"{med:.0f} [{vals[0]:.0f}-{vals[-1]:.0f}]"


def cell_figures(cell: dict[str, Any]) -> dict[str, float | None]:
    """The medians one row shows (also for README's table)."""
    runs = cell.get("runs") or []
    fm, pm = _ok(runs, FERRYMAN), _ok(runs, BY_HAND)
    gap_f, gap_p = _gap(fm), _gap(pm)
    beyond = _med([float(r["downtime_ms"]) - float(d)
                   for r in fm if isinstance(d := r["details"].get("report_downtime_ms"),
                                             int | float)])
    return {
        "gap_ferryman": gap_f, "gap_podman": gap_p,
        "ratio": gap_f / gap_p if gap_f is not None and gap_p else None,
        "total_ferryman": _med([float(r["total_ms"]) for r in fm]),
        "total_podman": _med([float(r["total_ms"]) for r in pm]),
        "report_downtime": _detail(fm, "report_downtime_ms"),
        "freezing": _phase(fm, "FREEZING"), "transfer": _phase(fm, "DUMPED", "TRANSFERRING"),
        "await_restore": _phase(fm, "AWAIT_RESTORE"), "beyond": beyond,
        "p_dump": _detail(pm, "dump_ms"), "p_copy": _detail(pm, "copy_ms"),
        "p_hold": _detail(pm, "hold_ms"), "p_restore": _detail(pm, "restore_ms"),
        "p_unhold": _detail(pm, "unhold_ms"), "p_archive": _detail(pm, "archive_bytes"),
    }


def section(result: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for mode in PODMAN_MODES:
        cells = [c for c in result["cells"] if c["mode"] == mode]
        if not cells:
            continue
        out += ["", f"## {TITLES[mode]}: ferryman vs Podman's own export/import "
                f"(median [min-max], ms; goal: ratio ≤ {PODMAN_GAP_GOAL})", "",
                "| ferryman mode | ok ferryman / Podman | client gap ferryman | Podman's own "
                "| ratio | total ferryman | Podman's own | ferryman report downtime | "
                "ferryman in the gap: FREEZING / DUMPED+TRANSFERRING / AWAIT_RESTORE / client "
                "beyond | Podman's own: checkpoint --export / cp / nft hold / restore --import "
                "/ nft unhold / archive MiB |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for c in cells:
            runs = c.get("runs") or []
            f = cell_figures(c)
            n = {t: (len(_ok(runs, t)), sum(1 for r in runs if r.get("tool") == t))
                 for t in (FERRYMAN, BY_HAND)}
            ratio = "-" if f["ratio"] is None else (
                f"{f['ratio']:.2f}x {'✓' if f['ratio'] <= PODMAN_GAP_GOAL else '✗'}")
            archive = f["p_archive"]
            out.append(
                f"| {c['migration']} | {n[FERRYMAN][0]}/{n[FERRYMAN][1]} "
                f"{n[BY_HAND][0]}/{n[BY_HAND][1]} | {_range(_ok(runs, FERRYMAN))} | "
                f"{_range(_ok(runs, BY_HAND))} | {ratio} | {_f(f['total_ferryman'])} | "
                f"{_f(f['total_podman'])} | {_f(f['report_downtime'])} | "
                f"{_f(f['freezing'])} / {_f(f['transfer'])} / {_f(f['await_restore'])} / "
                f"{_f(f['beyond'])} | {_f(f['p_dump'])} / {_f(f['p_copy'])} / "
                f"{_f(f['p_hold'])} / {_f(f['p_restore'])} / {_f(f['p_unhold'])} / "
                f"{'-' if archive is None else f'{archive / (1 << 20):.2f}'} |")
    return out
