"""The PowerError branch of the exception tree."""

from __future__ import annotations

import pytest

from ferryman.errors import FerrymanError
from ferryman.power.errors import (
    PlugConnectionClosed,
    PlugDeviceError,
    PlugInventoryError,
    PlugProtocolError,
    PlugStateNotChanged,
    PlugUnreachable,
    PlugUnsupportedFirmware,
    PowerError,
    about_plug,
)

ERRORS: list[PowerError] = [
    PlugUnreachable("no route"),
    PlugDeviceError(-1, "module not support", module="emeter"),
    PlugProtocolError("bad JSON"),
    PlugUnsupportedFirmware("port 9999 refused the connection"),
    PlugStateNotChanged(True),
    PlugInventoryError("inv.toml", "not TOML"),
]


def test_each_kind_of_failure_has_its_own_exit_code_in_20_to_29() -> None:
    codes = [type(error).exit_code for error in ERRORS]
    assert len(set(codes)) == len(codes)
    assert all(20 <= code <= 29 for code in [*codes, PowerError.exit_code])
    assert all(isinstance(error, FerrymanError) for error in ERRORS)


def test_closed_connection_is_a_protocol_error() -> None:
    assert PlugConnectionClosed(3, 10).exit_code == PlugProtocolError.exit_code


def test_one_line_names_the_plug_and_the_err_code() -> None:
    error = PlugDeviceError(-2, "member not support", module="system", method="x", plug="h:1")
    assert error.one_line().startswith("plug h:1: system.x failed with err_code -2")
    assert "\n" not in error.one_line()


def test_about_plug_fills_in_the_address_but_keeps_one_already_set() -> None:
    with pytest.raises(PlugProtocolError) as caught, about_plug("10.0.0.1:9999"):
        raise PlugProtocolError("bad")
    assert caught.value.plug == "10.0.0.1:9999"
    with pytest.raises(PlugProtocolError) as caught, about_plug("other:1"):
        raise PlugProtocolError("bad", plug="first:1")
    assert caught.value.plug == "first:1"


def test_unsupported_firmware_hint_names_klap() -> None:
    assert "KLAP" in PlugUnsupportedFirmware("refused").one_line()
