"""The curated zdtm static tests (tests/zdtm/curated.txt) and how to build them."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
CURATED = HERE / "curated.txt"
BUILD = HERE.parent.parent / "scripts" / "build-zdtm.sh"


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    tcp: bool  # live TCP connections: --tcp-established, by hand and with ferryman
    what: str  # what it covers, for the table
    sample: bool = False  # in the subset `make test` also moves pre-copy and hybrid
    guest: bool = False  # moved pre-copy and hybrid in the QEMU guests too (tests/zdtm/guests.py)


def parse(text: str) -> list[Entry]:
    """``NAME [tcp] [sample] [guest] # what`` lines; blank and comment lines skipped."""
    out = []
    for line in text.splitlines():
        body, _, what = line.partition("#")
        words = body.split()
        if not words:
            continue
        name, flags = words[0], set(words[1:])
        if flags - {"tcp", "sample", "guest"}:
            raise ValueError(f"unknown flag in {CURATED.name}: {line!r}")
        out.append(Entry(name, "tcp" in flags, what.strip(), sample="sample" in flags,
                         guest="guest" in flags))
    return out


def curated() -> list[Entry]:
    return parse(CURATED.read_text())


def build(names: list[str]) -> Path:
    """Build zdtm's lib and these tests (scripts/build-zdtm.sh); the static tests' dir."""
    res = subprocess.run([str(BUILD), *names], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"scripts/build-zdtm.sh failed: {res.stderr.strip()}")
    return Path(res.stdout.strip().splitlines()[-1])
