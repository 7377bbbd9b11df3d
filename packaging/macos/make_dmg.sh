#!/usr/bin/env bash
# Make a drag-to-install disk image from LlamaDesk.app (macOS only; called by packaging/build.py).
#
#   packaging/macos/make_dmg.sh dist/LlamaDesk.app dist/LlamaDesk-0.1.0-macos-arm64.dmg
#
# The image holds the app and a link to /Applications. With CODESIGN_IDENTITY set ("Developer ID
# Application: ..."), the app is signed (hardened runtime) before it goes in; without it, the app keeps
# PyInstaller's ad-hoc signature, which runs on the machine that built it (others need right-click > Open).
# Notarisation (xcrun notarytool) is a separate, manual step that needs an Apple developer account.
set -euo pipefail

fail() { echo "make_dmg.sh: $*" >&2; exit 1; }

[ "$(uname -s)" = Darwin ] || fail "disk images are made on macOS (hdiutil)"
[ $# -eq 2 ] || fail "usage: make_dmg.sh LlamaDesk.app OUTPUT.dmg"
APP="$1"
DMG="$2"
[ -d "$APP/Contents/MacOS" ] || fail "$APP is not an app bundle"
command -v hdiutil >/dev/null || fail "hdiutil is missing"

if [ -n "${CODESIGN_IDENTITY:-}" ]; then
    codesign --force --deep --options runtime --timestamp --sign "$CODESIGN_IDENTITY" "$APP"
    codesign --verify --deep --strict "$APP"
fi

STAGING="$(mktemp -d)"
trap 'rm -rf "$STAGING"' EXIT
cp -R "$APP" "$STAGING/"
ln -s /Applications "$STAGING/Applications"

rm -f "$DMG"
hdiutil create -volname "LlamaDesk" -srcfolder "$STAGING" -fs HFS+ -format UDZO -imagekey zlib-level=9 \
    -ov "$DMG" >/dev/null
hdiutil verify "$DMG" >/dev/null
echo "disk image: $DMG"
