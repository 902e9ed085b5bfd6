"""The PySide6 refcount work-around keeps a long-running app alive."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_a_million_qt_calls_do_not_free_none_or_true():
    """PySide6 6.12 on CPython 3.11 drops a reference to None/True per void call and per
    emit(); without the work-around this aborts with 'Fatal Python error: none_dealloc'."""
    code = textwrap.dedent("""
        import sys
        import linda_desktop.ui.bridge  # loads the work-around like the app does
        from PySide6.QtCore import QObject, Signal

        class Thing(QObject):
            ping = Signal()

        thing = Thing()
        for i in range(500_000):
            thing.ping.emit()
            thing.setObjectName("x")
        assert sys.getrefcount(None) > 1000 and sys.getrefcount(True) > 1000
        print("alive")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "alive"
