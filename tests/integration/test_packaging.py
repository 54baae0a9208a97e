"""Installing ferryman prints no deprecation warnings: ``pip install .``, ``pip install -e .``
and pycriu as scripts/install-criu.sh installs it (CRIU's own lib/pyproject.toml made
setuptools warn about ``project.license`` as a table), into a fresh virtualenv; and the wheel
carries the systemd unit."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# setuptools' SetuptoolsDeprecationWarning / BuildBackendWarning / pip's DEPRECATION lines;
# pip's own "Location ... is ignored" (this machine's index settings) is no deprecation
WARNING = re.compile(r"deprecat|BuildBackendWarning|SetuptoolsWarning", re.IGNORECASE)


def run(*argv: str | Path) -> str:
    res = subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=False,
                         timeout=600, cwd=REPO)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    return out


def warnings_in(output: str) -> list[str]:
    return [line for line in output.splitlines() if WARNING.search(line)]


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("venv")
    run(sys.executable, "-m", "venv", d)
    python = d / "bin" / "python"
    # as scripts/setup.sh does: a current pip shows the build backend's warnings even with -q
    run(python, "-m", "pip", "install", "-q", "--upgrade", "pip")
    return python


def test_pip_install_prints_no_deprecation_warning(venv: Path, tmp_path: Path) -> None:
    # -v: the build backend's own output (setuptools' warnings) is shown, not only pip's
    out = run(venv, "-m", "pip", "wheel", "-v", "--no-deps", "-w", tmp_path, ".")
    assert not warnings_in(out), "\n".join(warnings_in(out))
    wheel = next(tmp_path.glob("ferryman-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        assert "ferryman/data/ferryman.service" in names, names
        assert "ferryman/py.typed" in names
    out = run(venv, "-m", "pip", "install", "-v", "--no-deps", wheel)
    assert not warnings_in(out), "\n".join(warnings_in(out))


def test_pip_install_editable_prints_no_deprecation_warning(venv: Path) -> None:
    out = run(venv, "-m", "pip", "install", "-v", "--no-deps", "-e", ".")
    assert not warnings_in(out), "\n".join(warnings_in(out))
    unit = run(venv, "-c", "from importlib import resources; print(resources.files("
                           "'ferryman').joinpath('data/ferryman.service').read_text())")
    assert "Type=notify" in unit


def test_pycriu_installs_without_deprecation_warnings(venv: Path) -> None:
    # only pycriu: the criu binary is the machine's, whichever branch built it
    out = run(REPO / "scripts" / "install-criu.sh", "--pycriu-only", "--python", venv)
    assert "installing pycriu" in out, out  # a fresh virtualenv: it did install it
    assert not warnings_in(out), "\n".join(warnings_in(out))
    run(venv, "-c", "import pycriu.rpc_pb2, pycriu.images")
