"""A stand-in for the app in single-instance tests: takes the role the tray app takes.

    python instance_app.py STATE_DIR

Primary: prints {"role": "primary", "pid": ...} and serves until stdin closes (then quits
cleanly). Secondary: sends {"cmd": "show"} to the primary, prints {"role": "secondary",
"answer": ...} and exits 0.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from linda_desktop.system.single_instance import ControlClient, start_or_connect


def main() -> int:
    state = Path(sys.argv[1])
    handled: list[str] = []

    def handler(request: dict) -> dict:
        cmd = request["cmd"]
        handled.append(cmd)
        if cmd == "show":
            return {"ok": True, "result": "shown"}
        if cmd == "handled":
            return {"ok": True, "result": list(handled)}
        if cmd == "spawn":
            # Like Chromium: its own session, outlives us; close_fds=False so only O_CLOEXEC
            # keeps the lock descriptor out of it.
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"],
                                     start_new_session=True, close_fds=False)
            return {"ok": True, "result": child.pid}
        return {"ok": False, "error": f"unknown command {cmd!r}"}

    got = start_or_connect(state, handler)
    if isinstance(got, ControlClient):
        print(json.dumps({"role": "secondary", "answer": got.request({"cmd": "show"})}), flush=True)
        return 0
    print(json.dumps({"role": "primary", "pid": os.getpid()}), flush=True)
    sys.stdin.read()
    got.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
