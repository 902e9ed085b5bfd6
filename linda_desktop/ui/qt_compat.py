"""Work-around for a reference-counting bug in the Qt binding. Imported by every Qt module here.

PySide6 6.12.0 on CPython < 3.12: methods that return nothing, and ``SignalInstance.emit()``,
hand back ``None``/``True`` without taking a reference (the wheels are built for interpreters
where those objects are immortal, as they are since CPython 3.12). Every such call lowers the
object's reference count by one; a tray app makes millions of them, and after a while ``None``
or ``True`` is "freed" and the process aborts with "Fatal Python error: none_dealloc" (or
bool_dealloc). We do by hand what CPython 3.12 does: make ``None``, ``True`` and ``False``
immortal — once, and only when a probe shows the leak.
"""

from __future__ import annotations

import ctypes
import sys

from PySide6.QtCore import QObject, Signal

IMMORTAL = 1 << 40  # far more references than a process can ever drop
_applied = False


class _Probe(QObject):
    ping = Signal()


def _leak(obj: object, call, times: int = 16) -> int:
    before = sys.getrefcount(obj)
    for _ in range(times):
        call()
    return before - sys.getrefcount(obj)


def _add_refs(obj: object, count: int) -> None:
    # ob_refcnt is the first field of every CPython object, and id() is the object's address.
    ctypes.c_ssize_t.from_address(id(obj)).value += count


def binding_leaks_singletons() -> bool:
    """True when this PySide6 drops references to ``None``/``True`` it never took."""
    probe = _Probe()
    none_leak = _leak(None, lambda: probe.setObjectName("probe"))
    true_leak = _leak(True, probe.ping.emit)
    # Give the probe's references back before deciding anything.
    if none_leak > 0:
        _add_refs(None, none_leak)
    if true_leak > 0:
        _add_refs(True, true_leak)
    return none_leak >= 8 or true_leak >= 8


def protect_singletons() -> bool:
    """Make ``None``, ``True`` and ``False`` effectively immortal if the binding leaks them.
    Returns whether the work-around is active."""
    global _applied
    if _applied:
        return True
    if sys.implementation.name != "cpython" or sys.version_info >= (3, 12):
        return False
    if not binding_leaks_singletons():
        return False
    for obj in (None, True, False):
        _add_refs(obj, IMMORTAL)
    _applied = True
    return True


protect_singletons()
