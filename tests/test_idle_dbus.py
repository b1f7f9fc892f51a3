"""The Wayland source against a real D-Bus: a private dbus-daemon, and on it a
stand-in for GNOME's idle monitor (the one part no test machine has: Mutter
itself). The client side is the real code, speaking real D-Bus."""

from __future__ import annotations

import shutil
import subprocess
import threading

import pytest

from trayapp.idle.dbus import MUTTER, DesktopBusSource, _Buses

pytestmark = pytest.mark.skipif(shutil.which("dbus-daemon") is None, reason="needs dbus-daemon")


@pytest.fixture
def session_bus(monkeypatch):
    daemon = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--print-address=1"],
                              stdout=subprocess.PIPE, text=True)
    address = daemon.stdout.readline().strip()
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
    yield address
    daemon.terminate()
    daemon.wait(10)


class FakeMutter:
    """Answers GetIdletime on the bus as Mutter does (milliseconds, type 't')."""

    def __init__(self, address: str, idle_ms: int):
        from jeepney.bus_messages import message_bus
        from jeepney.io.blocking import open_dbus_connection

        self.idle_ms = idle_ms
        self.conn = open_dbus_connection(bus=address)
        self.conn.send_and_get_reply(message_bus.RequestName(MUTTER[0]))
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        from jeepney import HeaderFields, MessageType, new_error, new_method_return

        while True:
            try:
                msg = self.conn.receive()
            except Exception:  # noqa: BLE001 - the connection closed: the test is over
                return
            if msg.header.message_type != MessageType.method_call:
                continue
            if msg.header.fields.get(HeaderFields.member) == "GetIdletime":
                self.conn.send(new_method_return(msg, "t", (self.idle_ms,)))
            else:
                self.conn.send(new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod"))

    def close(self) -> None:
        self.conn.close()


def test_gnome_idle_monitor_over_a_real_session_bus(session_bus):
    mutter = FakeMutter(session_bus, idle_ms=42_000)
    buses = _Buses()
    try:
        source = DesktopBusSource.connect(buses.call, locked_hint=lambda: None)
        assert source is not None and source.name == "GNOME idle monitor"
        assert source.read().idle_s == 42.0
        mutter.idle_ms = 1_500
        reading = source.read()
        assert reading.idle_s == 1.5 and not reading.locked  # org.gnome.ScreenSaver is absent: not locked
    finally:
        mutter.close()


def test_a_session_bus_without_an_idle_monitor_gives_no_source(session_bus):
    assert DesktopBusSource.connect(_Buses().call, locked_hint=lambda: None) is None
