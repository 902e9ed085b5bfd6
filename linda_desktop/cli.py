"""Command line (DESIGN.md §3, a fixed contract).

Exit codes: 0 ok, 1 failure with a one-line reason on stderr, 2 usage.
When the app is already running, commands that touch the session talk to it instead of
working on the profile under its feet. Every failure is one line: an OSError (read-only or full
data folder) becomes a StorageError's words and fix; a stop signal to `run`, even during
start-up, is the owner's wish and exits 0.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from linda_desktop import __version__
from linda_desktop.base.errors import LindaError, StorageError

DEFAULT_WA_URL = "https://web.whatsapp.com/"


def _global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """--data-dir/--wa-url/--browser, accepted before or after the command."""
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("--data-dir", metavar="DIR", default=default,
                        help="keep every file under DIR instead of the OS folders (env LINDA_DATA_DIR)")
    parser.add_argument("--wa-url", metavar="URL", default=default,
                        help=f"WhatsApp Web address (env LINDA_WA_URL; default {DEFAULT_WA_URL})")
    parser.add_argument("--browser", metavar="PATH", default=default,
                        help="a Chromium-family browser executable (env LINDA_BROWSER; default: discovery)")
    parser.add_argument("--verbose", action="store_true", default=default if suppress else False,
                        help="log debug details")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="linda-desktop",
        description="Keeps your WhatsApp Web session alive across every restart. "
                    "Without a command it starts the tray application.")
    parser.add_argument("--version", action="version", version=f"linda-desktop {__version__}")
    parser.add_argument("--background", action="store_true",
                        help="start in the tray with no window unless linking is needed (used at login)")
    _global_options(parser, suppress=False)
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, suppress=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", parents=[common], help="run the session service without a tray (servers, terminals)")
    run.add_argument("--json", action="store_true", help="print one JSON object per line for every event")
    run.add_argument("--phone", metavar="NUMBER",
                     help="link with a pairing code for this number (country code first) instead of the QR")

    status = sub.add_parser("status", parents=[common], help="what the session is and has been")
    status.add_argument("--json", action="store_true")
    sub.add_parser("backup", parents=[common], help="take an encrypted backup of the session now")
    backups = sub.add_parser("backups", parents=[common], help="list the backups")
    backups.add_argument("--json", action="store_true")
    restore = sub.add_parser("restore", parents=[common],
                             help="restore a backup (without an ID: the newest one that verifies)")
    restore.add_argument("id", nargs="?", metavar="ID")
    verify = sub.add_parser("verify", parents=[common],
                            help="check every backup, or one, without touching the session (exit 1 if any fails)")
    verify.add_argument("id", nargs="?", metavar="ID")
    verify.add_argument("--json", action="store_true")
    sub.add_parser("relink", parents=[common],
                   help="clear the live session (archived; backups are kept) and link again with a QR code")
    imp = sub.add_parser("import", parents=[common], help="import a whatsapp-web.js LocalAuth session folder")
    imp.add_argument("path", metavar="PATH")
    auto = sub.add_parser("autostart", parents=[common], help="start Linda Desktop at login")
    auto.add_argument("action", choices=["enable", "disable", "status"])
    doctor = sub.add_parser("doctor", parents=[common], help="check browser, keyring, data folder and tray")
    doctor.add_argument("--json", action="store_true")
    sub.add_parser("finish-link", parents=[common],
                   help="bring the WhatsApp window of the linking step on screen (WhatsApp's passkey step)")
    sub.add_parser("clear-logs", parents=[common], help="empty the log files and the event history")
    bot = sub.add_parser("api", parents=[common], add_help=False,
                         help="the bot API: token, reset-token, enable, disable, set-webhook, openapi, update-bridge")
    bot.add_argument("api_args", nargs=argparse.REMAINDER)
    sub.add_parser("set-passphrase", parents=[common],
                   help="opt in to a backup passphrase instead of the keyring (reads LINDA_BACKUP_PASSPHRASE or asks)")
    return parser


def resolve_options(args: argparse.Namespace) -> tuple[str | None, str, str | None]:
    data_dir = getattr(args, "data_dir", None) or os.environ.get("LINDA_DATA_DIR") or None
    wa_url = getattr(args, "wa_url", None) or os.environ.get("LINDA_WA_URL") or DEFAULT_WA_URL
    browser = getattr(args, "browser", None) or os.environ.get("LINDA_BROWSER") or None
    return data_dir, wa_url, browser


# Qt platforms that need no display server.
_HEADLESS_QT = {"offscreen", "minimal", "vnc", "eglfs", "linuxfb", "vkkhrdisplay"}


def display_problem(environ: Mapping[str, str] | None = None, platform: str | None = None) -> str | None:
    """Why the tray cannot start here (no display), or None. Checked before Qt loads: Qt would abort."""
    environ = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    if not (platform.startswith("linux") or "bsd" in platform):
        return None
    wanted = [p.split(":")[0].strip().lower() for p in environ.get("QT_QPA_PLATFORM", "").split(";")]
    if any(p in _HEADLESS_QT for p in wanted):
        return None
    if environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"):
        return None
    return ("There is no display for the tray (DISPLAY and WAYLAND_DISPLAY are not set) — "
            "on a server or in a terminal use `linda-desktop run`")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    raw = list(sys.argv[1:] if argv is None else argv)
    # `api …` hands everything after it to the bot API's own parser (its --help included).
    args, api_extra = parser.parse_known_args(raw) if "api" in raw else (parser.parse_args(raw), [])
    if api_extra and args.command != "api":
        parser.error(f"unrecognized arguments: {' '.join(api_extra)}")
    if args.command is None and (problem := display_problem()):
        print(f"linda-desktop: {problem}", file=sys.stderr)
        return 1
    if args.command == "api":  # the bot API's own commands (linda_desktop/api/__main__.py)
        from linda_desktop.api.__main__ import main as api_main

        data_dir = resolve_options(args)[0]
        return api_main([*api_extra, *args.api_args, *(["--data-dir", data_dir] if data_dir else [])])
    if args.command == "run" and hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, _interrupt)  # until `run` installs its own: a stop, like Ctrl-C
    try:
        return dispatch(args)
    except LindaError as exc:
        print(f"linda-desktop: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        doing = f"running `{args.command}`" if args.command else "starting"
        print(f"linda-desktop: {StorageError.from_os_error(exc, doing)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0 if args.command == "run" else 1  # `run` was asked to stop: that is success


def main_gui() -> int:
    """Entry point of the windowed (no console) launcher."""
    return main()


def dispatch(args: argparse.Namespace) -> int:
    from linda_desktop import app
    from linda_desktop.base.logs import setup_logging
    from linda_desktop.base.paths import resolve_paths

    data_dir, wa_url, browser = resolve_options(args)
    paths = resolve_paths(data_dir)
    command = args.command
    long_running = command in (None, "run")  # one-shot commands: a failure stays one line on stderr
    setup_logging(paths, verbose=bool(getattr(args, "verbose", False)), stderr=command is not None,
                  fallback_level=logging.WARNING if long_running else logging.ERROR)
    if command is None:
        return app.run_tray_app(paths, wa_url=wa_url, browser=browser, background=args.background)
    if command == "run":
        return app.run_headless(paths, wa_url=wa_url, browser=browser, json_lines=args.json,
                                pairing_phone=args.phone)
    handler = COMMANDS[command]
    return handler(args, app.Context(paths=paths, wa_url=wa_url, browser=browser))


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def cmd_status(args: argparse.Namespace, ctx: Any) -> int:
    from linda_desktop.service.diagnostics import format_status

    data = ctx.status()
    if args.json:
        _print_json(data)
    else:
        print(format_status(data))
    return 0


def cmd_backup(args: argparse.Namespace, ctx: Any) -> int:
    info = ctx.backup()
    print(f"Backup {info['id']} saved ({info['size'] / 1_000_000:.1f} MB).")
    return 0


def cmd_backups(args: argparse.Namespace, ctx: Any) -> int:
    items = ctx.backups()
    if args.json:
        _print_json(items)
        return 0
    if not items:
        print("No backups yet.")
        return 0
    for item in items:
        mark = "  (last known good)" if item.get("known_good") else ""
        if item.get("key_matches") is False:
            mark += "  (made with another key: kept, cannot be opened with this one)"
        print(f"{item['id']}  {item['created_at']}  {item['size'] / 1_000_000:7.1f} MB  {item['reason']}{mark}")
    if any(item.get("key_matches") is None for item in items):
        print("The backup key is not available (no unlocked keyring or passphrase): these backups are kept, "
              "but cannot be opened, verified or restored without it.")
    return 0


def cmd_restore(args: argparse.Namespace, ctx: Any) -> int:
    result = ctx.restore(args.id)
    for skipped in result.get("skipped") or []:
        print(f"Skipped backup {skipped['id']}: {skipped['error']}")
    which = " (the newest one that verifies)" if not args.id else ""
    print(f"Restored backup {result['restored']}{which}."
          + (f" Session: {result['state']}." if result.get("state") else ""))
    return 0


def cmd_verify(args: argparse.Namespace, ctx: Any) -> int:
    results = ctx.verify(args.id)
    if args.json:
        _print_json(results)
    elif not results:
        print("No backups yet.")
    for item in results if not args.json else []:
        print(f"ok      {item['id']}" if item["ok"] else f"FAILED  {item['id']}: {item['error']}")
    failed = [item["id"] for item in results if not item["ok"]]
    if failed:
        print(f"linda-desktop: {len(failed)} of {len(results)} backup(s) failed verification: {', '.join(failed)}",
              file=sys.stderr)
        return 1
    return 0


def cmd_relink(args: argparse.Namespace, ctx: Any) -> int:
    ctx.relink()
    print("The live session was archived (backups are kept). Start Linda Desktop and scan the QR code to link again.")
    return 0


def cmd_import(args: argparse.Namespace, ctx: Any) -> int:
    result = ctx.import_session(args.path)
    print(f"Imported {result['files']} files from {args.path}.")
    return 0


def cmd_autostart(args: argparse.Namespace, ctx: Any) -> int:
    from linda_desktop.service.diagnostics import data_dir_override
    from linda_desktop.system.autostart import autostart_for_platform

    strategy = autostart_for_platform(data_dir=data_dir_override(ctx.paths))
    if args.action == "enable":
        strategy.enable()
        print(f"Linda Desktop will start at login ({strategy.describe()}).")
    elif args.action == "disable":
        strategy.disable()
        print("Linda Desktop will not start at login.")
    else:
        enabled = strategy.is_enabled()
        print(f"Start at login: {'on' if enabled else 'off'} ({strategy.describe()})")
    return 0


def cmd_doctor(args: argparse.Namespace, ctx: Any) -> int:
    from linda_desktop.service.diagnostics import doctor_checks, format_doctor

    checks = doctor_checks(ctx.paths, wa_url=ctx.wa_url, browser=ctx.browser)
    if args.json:
        _print_json([c.to_json() for c in checks])
    else:
        print(format_doctor(checks))
        print(f"Log file: {ctx.paths.log_file}")
    failed = [c for c in checks if not c.ok]
    if failed:
        print(f"linda-desktop: {len(failed)} check(s) failed: {', '.join(c.name for c in failed)}", file=sys.stderr)
        return 1
    return 0


def cmd_finish_link(args: argparse.Namespace, ctx: Any) -> int:
    result = ctx.finish_link()
    if result.get("state") == "connected":
        print("Already linked: nothing to finish.")
        return 0
    if result.get("window_shown"):
        print("The WhatsApp window is on screen: press Continue there and follow its steps "
              "(WhatsApp may ask you to confirm on your phone).")
        return 0
    print("There is no linking window to show: the app runs without a display — link once on a desktop and "
          "`linda-desktop import` the profile, or use `linda-desktop run --phone NUMBER` for a pairing code",
          file=sys.stderr)
    return 1


def cmd_clear_logs(args: argparse.Namespace, ctx: Any) -> int:
    count = ctx.clear_logs()
    print(f"Cleared {count} log file(s) and the event history.")
    return 0


def cmd_set_passphrase(args: argparse.Namespace, ctx: Any) -> int:
    import getpass

    passphrase = os.environ.get("LINDA_BACKUP_PASSPHRASE")
    if not passphrase:
        if not sys.stdin.isatty():
            raise LindaError("No passphrase given", "set LINDA_BACKUP_PASSPHRASE or run this in a terminal")
        passphrase = getpass.getpass("Backup passphrase: ")
        if passphrase != getpass.getpass("Repeat it: "):
            raise LindaError("The two passphrases differ", "run the command again")
    ctx.set_passphrase(passphrase)
    print("Backups now use your passphrase. Keep LINDA_BACKUP_PASSPHRASE set when Linda Desktop starts.")
    return 0


COMMANDS = {
    "status": cmd_status,
    "backup": cmd_backup,
    "backups": cmd_backups,
    "restore": cmd_restore,
    "verify": cmd_verify,
    "relink": cmd_relink,
    "import": cmd_import,
    "autostart": cmd_autostart,
    "doctor": cmd_doctor,
    "finish-link": cmd_finish_link,
    "clear-logs": cmd_clear_logs,
    "set-passphrase": cmd_set_passphrase,
}
