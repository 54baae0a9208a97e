"""VM tests: QEMU guests with a soft-dirty kernel (tests/vm/make-vm.sh, tests/vm/run-vm.sh).

They boot real guests (TCG, about 15 s a boot, minutes for a first image build), so they run
only when asked: ``make test-vm`` sets FERRYMAN_VM=1. Otherwise every vm-marked test is skipped.
"""

from __future__ import annotations

import os

import pytest

from tests.vm.vmrun import build_image

ENABLE = "FERRYMAN_VM"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"vm: boots QEMU test guests; runs only with {ENABLE}=1 (make test-vm)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get(ENABLE) == "1":
        return
    skip = pytest.mark.skip(reason=f"boots QEMU guests: run 'make test-vm' (or set {ENABLE}=1)")
    for item in items:
        if item.get_closest_marker("vm") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def vm_image() -> float:
    """The guest image, built or reused (make-vm.sh is idempotent); seconds it took."""
    if os.geteuid() != 0:
        pytest.fail("VM tests need root (debootstrap, chroot for the image build)")
    return build_image()
