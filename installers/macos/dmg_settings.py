"""dmgbuild settings: the .app beside an Applications link (drag to install).

    python -m dmgbuild -s installers/macos/dmg_settings.py -D app="dist/Linda Desktop.app" "Linda Desktop" out.dmg
"""

import os.path

application = defines.get("app", "dist/Linda Desktop.app")  # noqa: F821 - dmgbuild provides `defines`
appname = os.path.basename(application)

format = "UDZO"
filesystem = "HFS+"
files = [application]
symlinks = {"Applications": "/Applications"}
badge_icon = None
icon_locations = {appname: (140, 160), "Applications": (420, 160)}
window_rect = ((200, 120), (560, 360))
default_view = "icon-view"
icon_size = 96
