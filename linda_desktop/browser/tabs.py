"""One WhatsApp page per profile: forget the tabs Chromium would restore after a kill.

After a crash or kill Chromium may restore the old tabs; several WhatsApp pages on one profile
fight each other (conflict, reference §6). Before each launch ``forget_open_tabs`` removes the
session files and marks the last exit as normal in ``Preferences``, so nothing is restored and
no "Restore pages?" prompt appears. ``WhatsAppPage.start`` calls it and also closes any extra
tab that shows up anyway.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from linda_desktop.base.atomic import atomic_write_bytes

log = logging.getLogger(__name__)

# Chromium >= 100 keeps them in Default/Sessions/; older builds beside Preferences.
_SESSION_DIRS = ("Sessions",)
_SESSION_FILES = ("Current Session", "Current Tabs", "Last Session", "Last Tabs")


def forget_open_tabs(profile_dir: Path, profile_name: str = "Default") -> list[str]:
    """Removes the restorable session of ``profile_dir`` and marks its exit clean. Returns what
    was removed or changed (for the log). A missing profile is fine: nothing to do."""
    base = Path(profile_dir) / profile_name
    done: list[str] = []
    for name in _SESSION_DIRS:
        target = base / name
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
            done.append(name)
    for name in _SESSION_FILES:
        target = base / name
        try:
            target.unlink()
            done.append(name)
        except FileNotFoundError:
            pass
        except OSError as err:
            log.debug("could not remove %s: %s", target, err)
    if _mark_clean_exit(base / "Preferences"):
        done.append("Preferences:exit_type")
    return done


def _mark_clean_exit(prefs_file: Path) -> bool:
    try:
        prefs = json.loads(prefs_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return False
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        log.debug("Preferences unreadable, left as is: %s", err)
        return False
    if not isinstance(prefs, dict):
        return False
    profile = prefs.setdefault("profile", {})
    if not isinstance(profile, dict):
        return False
    if profile.get("exit_type") == "Normal" and profile.get("exited_cleanly") is True:
        return False
    profile["exit_type"] = "Normal"
    profile["exited_cleanly"] = True
    try:
        atomic_write_bytes(prefs_file, json.dumps(prefs, separators=(",", ":")).encode("utf-8"))
    except OSError as err:
        log.debug("could not write %s: %s", prefs_file, err)
        return False
    return True
