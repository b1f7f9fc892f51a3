"""Idle time on macOS: IOKit's ``HIDIdleTime``, plus pynput for instant notice.

The ``IOHIDSystem`` service's ``HIDIdleTime`` property is the time since the
last keyboard, mouse or trackpad event, in nanoseconds. It is a CFNumber on
current systems and was an 8-byte CFData on old ones; :func:`hid_idle_seconds`
takes either. The lock state is the window server's
``CGSSessionScreenIsLocked`` (absent from the session dictionary when
unlocked).

The IOKit and CoreGraphics calls sit in :class:`IOKitApi`; the conversion
does not, so the tests feed it raw values on Linux.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Protocol

from trayapp.idle.reading import IdleReading
from trayapp.idle.userinput import PynputInput


def hid_idle_seconds(raw: int | bytes) -> float:
    """``HIDIdleTime`` (nanoseconds, as a number or 8 little-endian bytes) in seconds."""
    if isinstance(raw, (bytes, bytearray)):
        raw = int.from_bytes(raw[:8], "little")
    return int(raw) / 1e9


class MacApi(Protocol):
    def hid_idle_raw(self) -> int | bytes: ...
    def screen_locked(self) -> bool: ...


class IOKitApi:
    """The real calls through ctypes (only works on macOS)."""

    _kCFNumberSInt64Type = 4
    _kCFStringEncodingUTF8 = 0x08000100

    def __init__(self):
        cf = ctypes.cdll.LoadLibrary(ctypes.util.find_library("CoreFoundation"))
        iokit = ctypes.cdll.LoadLibrary(ctypes.util.find_library("IOKit"))
        cg = ctypes.cdll.LoadLibrary(ctypes.util.find_library("CoreGraphics"))
        vp, u32 = ctypes.c_void_p, ctypes.c_uint32
        cf.CFStringCreateWithCString.restype = vp
        cf.CFStringCreateWithCString.argtypes = [vp, ctypes.c_char_p, u32]
        cf.CFGetTypeID.restype = ctypes.c_ulong
        cf.CFGetTypeID.argtypes = [vp]
        cf.CFNumberGetTypeID.restype = ctypes.c_ulong
        cf.CFNumberGetValue.argtypes = [vp, ctypes.c_int, vp]
        cf.CFDataGetLength.restype = ctypes.c_long
        cf.CFDataGetLength.argtypes = [vp]
        cf.CFDataGetBytePtr.restype = vp
        cf.CFDataGetBytePtr.argtypes = [vp]
        cf.CFDictionaryGetValue.restype = vp
        cf.CFDictionaryGetValue.argtypes = [vp, vp]
        cf.CFBooleanGetValue.restype = ctypes.c_bool
        cf.CFBooleanGetValue.argtypes = [vp]
        cf.CFRelease.argtypes = [vp]
        iokit.IOServiceMatching.restype = vp
        iokit.IOServiceMatching.argtypes = [ctypes.c_char_p]
        iokit.IOServiceGetMatchingService.restype = u32
        iokit.IOServiceGetMatchingService.argtypes = [u32, vp]
        iokit.IORegistryEntryCreateCFProperty.restype = vp
        iokit.IORegistryEntryCreateCFProperty.argtypes = [u32, vp, vp, u32]
        cg.CGSessionCopyCurrentDictionary.restype = vp
        self._cf, self._iokit, self._cg = cf, iokit, cg
        self._service = iokit.IOServiceGetMatchingService(0, iokit.IOServiceMatching(b"IOHIDSystem"))
        if not self._service:
            raise OSError("no IOHIDSystem service")
        self._idle_key = cf.CFStringCreateWithCString(None, b"HIDIdleTime", self._kCFStringEncodingUTF8)
        self._locked_key = cf.CFStringCreateWithCString(None, b"CGSSessionScreenIsLocked",
                                                        self._kCFStringEncodingUTF8)

    def hid_idle_raw(self) -> int | bytes:
        cf = self._cf
        ref = self._iokit.IORegistryEntryCreateCFProperty(self._service, self._idle_key, None, 0)
        if not ref:
            raise OSError("IOHIDSystem has no HIDIdleTime")
        try:
            if cf.CFGetTypeID(ref) == cf.CFNumberGetTypeID():
                value = ctypes.c_int64()
                cf.CFNumberGetValue(ref, self._kCFNumberSInt64Type, ctypes.byref(value))
                return value.value
            return ctypes.string_at(cf.CFDataGetBytePtr(ref), cf.CFDataGetLength(ref))
        finally:
            cf.CFRelease(ref)

    def screen_locked(self) -> bool:
        session = self._cg.CGSessionCopyCurrentDictionary()
        if not session:
            return False  # no window server session (e.g. over SSH): nothing is locked
        try:
            value = self._cf.CFDictionaryGetValue(session, self._locked_key)
            return bool(value) and self._cf.CFBooleanGetValue(value)
        finally:
            self._cf.CFRelease(session)


class MacSource(PynputInput):
    name = "macOS HIDIdleTime"

    def __init__(self, api: MacApi | None = None):
        self._api = api or IOKitApi()

    def read(self) -> IdleReading:
        return IdleReading(hid_idle_seconds(self._api.hid_idle_raw()), locked=self._api.screen_locked())
