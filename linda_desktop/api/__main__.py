"""``python -m linda_desktop.api COMMAND [--data-dir DIR]``: the bot API from a terminal.

    token         print the API token (creates it on first use; kept in the OS keyring)
    reset-token   make a new token (bots with the old one get 401)
    enable        api_enabled = true in settings.json (the running app picks it up at its next start)
    disable       api_enabled = false
    set-webhook URL | --clear [--format linda|waha]
    openapi       print the OpenAPI document
    update-bridge [--registry URL]   fetch the newest supported wa-js (checked against the
                  registry's sha512 integrity hash; the previous build is kept to roll back to)

Also as `linda-desktop api COMMAND`.
"""

from __future__ import annotations

import argparse
import json
import sys

from linda_desktop.base.errors import LindaError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="linda-desktop api", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["token", "reset-token", "enable", "disable", "set-webhook", "openapi",
                                            "update-bridge"])
    parser.add_argument("--format", choices=["linda", "waha"], default=None)
    parser.add_argument("--registry", default=None)
    parser.add_argument("url", nargs="?")
    parser.add_argument("--clear", action="store_true")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    try:
        if args.command in ("token", "reset-token"):
            from linda_desktop.api.token import load_token, reset_token

            print(reset_token() if args.command == "reset-token" else load_token())
            return 0
        if args.command == "openapi":
            from linda_desktop.api.openapi import document

            print(json.dumps(document(), indent=2))
            return 0
        from linda_desktop.base.paths import resolve_paths
        from linda_desktop.base.settings import Settings

        paths = resolve_paths(args.data_dir)
        if args.command == "update-bridge":
            from linda_desktop.api.bridge_update import update_bridge

            result = update_bridge(paths.data / "bridge", args.registry)
            word = "installed" if result["installed"] else "already current:"
            print(f"wa-js {result['version']} {word} (previous: {result['previous'] or 'the bundled build'}); "
                  "used from the next start")
            return 0
        settings = Settings.load(paths.settings_file)
        if args.command in ("enable", "disable"):
            settings.api_enabled = args.command == "enable"
        else:
            from linda_desktop.api.webhooks import check_webhook_url

            if args.clear:
                settings.webhook_url = None
            elif args.url:
                settings.webhook_url = check_webhook_url(args.url)
                if args.format:
                    settings.webhook_format = args.format
            else:
                parser.error("set-webhook needs a URL or --clear")
        settings.save(paths.settings_file)
        print(f"{paths.settings_file}: api_enabled={settings.api_enabled} webhook_url={settings.webhook_url} "
              f"webhook_format={settings.webhook_format}")
        return 0
    except LindaError as exc:
        print(f"linda-desktop: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
