#!/usr/bin/env bash
# macOS: sign the PyInstaller .app, wrap it in a .dmg, sign and notarize that. Run on a Mac after
# the bundle is built (installers/build_release.py runs this with the dist folder).
#
#   bash installers/macos/build_dmg.sh [DIST]          # DIST defaults to ./dist
#
# Signing and notarization are parameterised by environment variables and skipped without them:
#   MACOS_SIGN_IDENTITY      "Developer ID Application: Name (TEAMID)" in the login keychain
#   MACOS_NOTARY_PROFILE     a profile saved with `xcrun notarytool store-credentials`, or else
#   MACOS_NOTARY_APPLE_ID, MACOS_NOTARY_TEAM_ID, MACOS_NOTARY_PASSWORD (app-specific password)
# Without an identity the .app is ad-hoc signed (runs on this Mac; other Macs need right-click → Open).
# Uses dmgbuild when installed (pip install dmgbuild: a window with an Applications link), else hdiutil.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
DIST="$(cd "${1:-$REPO/dist}" && pwd)"
APP_NAME="Linda Desktop"
APP="$DIST/$APP_NAME.app"
VERSION="$(python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); import linda_desktop; print(linda_desktop.__version__)' "$REPO")"
DMG="$DIST/LindaDesktop-$VERSION.dmg"
ENTITLEMENTS="$HERE/entitlements.plist"

[ -d "$APP" ] || { echo "build_dmg: no $APP: build the bundle first (installers/build_release.py)" >&2; exit 1; }
plutil -lint "$APP/Contents/Info.plist"
/usr/libexec/PlistBuddy -c "Print :LSUIElement" "$APP/Contents/Info.plist" | grep -q true \
  || { echo "build_dmg: LSUIElement missing: the app would show a Dock icon" >&2; exit 1; }

sign_app() {
  local identity="$1"; shift
  # Inside out: every Mach-O (Python extensions, Qt, node) first, then the app itself.
  while IFS= read -r -d '' file; do
    if file -b "$file" | grep -q "Mach-O"; then
      codesign --force --timestamp --options runtime --entitlements "$ENTITLEMENTS" --sign "$identity" "$@" "$file"
    fi
  done < <(find "$APP/Contents" -type f -print0)
  codesign --force --timestamp --options runtime --entitlements "$ENTITLEMENTS" --sign "$identity" "$@" "$APP"
  codesign --verify --deep --strict --verbose=2 "$APP"
}

if [ -n "${MACOS_SIGN_IDENTITY:-}" ]; then
  echo "build_dmg: signing with $MACOS_SIGN_IDENTITY"
  sign_app "$MACOS_SIGN_IDENTITY"
else
  echo "build_dmg: MACOS_SIGN_IDENTITY not set: ad-hoc signature only, no notarization"
  codesign --force --deep --sign - "$APP"
fi

rm -f "$DMG"
if python3 -c "import dmgbuild" 2>/dev/null; then
  python3 -m dmgbuild -s "$HERE/dmg_settings.py" -D app="$APP" "$APP_NAME" "$DMG"
else
  staging="$(mktemp -d)"
  trap 'rm -rf "$staging"' EXIT
  cp -R "$APP" "$staging/"
  ln -s /Applications "$staging/Applications"
  hdiutil create -volname "$APP_NAME" -srcfolder "$staging" -fs HFS+ -format UDZO -ov "$DMG"
fi

if [ -n "${MACOS_SIGN_IDENTITY:-}" ]; then
  codesign --force --timestamp --sign "$MACOS_SIGN_IDENTITY" "$DMG"
  notary=()
  if [ -n "${MACOS_NOTARY_PROFILE:-}" ]; then
    notary=(--keychain-profile "$MACOS_NOTARY_PROFILE")
  elif [ -n "${MACOS_NOTARY_APPLE_ID:-}" ] && [ -n "${MACOS_NOTARY_TEAM_ID:-}" ] && [ -n "${MACOS_NOTARY_PASSWORD:-}" ]; then
    notary=(--apple-id "$MACOS_NOTARY_APPLE_ID" --team-id "$MACOS_NOTARY_TEAM_ID" --password "$MACOS_NOTARY_PASSWORD")
  fi
  if [ "${#notary[@]}" -gt 0 ]; then
    echo "build_dmg: notarizing (takes a few minutes)"
    xcrun notarytool submit "$DMG" "${notary[@]}" --wait
    xcrun stapler staple "$DMG"
    xcrun stapler validate "$DMG"
  else
    echo "build_dmg: no notary credentials: signed but not notarized"
  fi
fi
hdiutil verify "$DMG"
echo "$DMG"
