#!/usr/bin/env bash
# Install LlamaDesk for this user only (no root): run it from the unpacked LlamaDesk-*-linux archive.
#
#   ./install.sh               install (or update) into ~/.local
#   ./install.sh --uninstall   remove the app again (chats, settings and models are kept)
#
# Where things go (XDG_DATA_HOME is honoured):
#   ~/.local/opt/llamadesk/LlamaDesk/                         the app itself (and uninstall.sh)
#   ~/.local/bin/llamadesk                                    a link to start it from a terminal
#   ~/.local/share/applications/llamadesk.desktop             the menu entry (Exec = the installed binary)
#   ~/.local/share/icons/hicolor/<size>/apps/llamadesk.png    the icon
# Options: --bundle DIR (default: LlamaDesk/ beside this script), --home DIR (default: $HOME).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BUNDLE="$SCRIPT_DIR/LlamaDesk"
ACTION=install

fail() { echo "install.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --uninstall) ACTION=uninstall ;;
        --bundle) [ $# -ge 2 ] || fail "--bundle needs a folder"; BUNDLE="$2"; shift ;;
        --home) [ $# -ge 2 ] || fail "--home needs a folder"; HOME="$2"; unset XDG_DATA_HOME; shift ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) fail "unknown option '$1' (try --help)" ;;
    esac
    shift
done

[ "$(id -u)" -ne 0 ] || echo "install.sh: note: installing for root only; run it as your own user instead." >&2

DATA_HOME="${XDG_DATA_HOME:-$HOME/.local/share}"
APP_HOME="$HOME/.local/opt/llamadesk"
BIN_DIR="$HOME/.local/bin"
LAUNCHER="$BIN_DIR/llamadesk"
DESKTOP_FILE="$DATA_HOME/applications/llamadesk.desktop"
ICON_THEME="$DATA_HOME/icons/hicolor"
ICON_SIZES="16 24 32 48 64 128 256 512"

refresh_desktop_caches() {
    if command -v update-desktop-database >/dev/null 2>&1; then
        update-desktop-database -q "$DATA_HOME/applications" 2>/dev/null || true
    fi
    if command -v gtk-update-icon-cache >/dev/null 2>&1; then
        gtk-update-icon-cache -q -t "$ICON_THEME" 2>/dev/null || true
    fi
}

uninstall() {
    rm -f "$DESKTOP_FILE"
    for size in $ICON_SIZES; do rm -f "$ICON_THEME/${size}x${size}/apps/llamadesk.png"; done
    rm -f "$ICON_THEME/scalable/apps/llamadesk.svg"
    if [ -L "$LAUNCHER" ]; then rm -f "$LAUNCHER"; fi
    rm -rf "$APP_HOME"
    refresh_desktop_caches
    echo "LlamaDesk is removed. Your chats, settings and models are kept (delete them from LlamaDesk's"
    echo "data folder, ~/.local/share/LlamaDesk, if you want them gone too)."
}

# The Exec key's form of a path: quoted when it has spaces or reserved characters; the few characters
# that would need escaping inside quotes are refused instead.
exec_value() {
    case "$1" in *[\"\`\$\\]*) fail "cannot install under a path containing \", \`, \$ or \\: $1" ;; esac
    case "$1" in
        *[[:space:]\'\<\>\~\|\&\;\*\?\#\(\)]*) printf '"%s"' "$1" ;;
        *) printf '%s' "$1" ;;
    esac
}

# Copy the desktop entry, pointing Exec and TryExec at the installed binary.
write_desktop_entry() {
    local source="$1" binary="$2" target="$3" line
    while IFS= read -r line || [ -n "$line" ]; do
        case "$line" in
            Exec=*) printf 'Exec=%s %%f\n' "$(exec_value "$binary")" ;;
            TryExec=*) printf 'TryExec=%s\n' "$binary" ;;
            *) printf '%s\n' "$line" ;;
        esac
    done < "$source" > "$target.tmp"
    mv "$target.tmp" "$target"
    chmod 644 "$target"
}

install_app() {
    [ -x "$BUNDLE/LlamaDesk" ] || fail "no LlamaDesk bundle at $BUNDLE (expected the executable $BUNDLE/LlamaDesk)"
    local icons="$BUNDLE/_internal/resources/icons"
    [ -d "$icons" ] || fail "the bundle at $BUNDLE has no icons ($icons is missing)"
    local entry="$SCRIPT_DIR/llamadesk.desktop"
    [ -f "$entry" ] || fail "llamadesk.desktop is missing beside install.sh"
    local binary="$APP_HOME/LlamaDesk/LlamaDesk"
    exec_value "$binary" >/dev/null  # refuses an unusable install path before anything is copied

    mkdir -p "$APP_HOME" "$BIN_DIR" "$(dirname "$DESKTOP_FILE")"
    # Copy beside the old version first, then swap, so a failed copy leaves the old app working.
    rm -rf "$APP_HOME/LlamaDesk.new"
    cp -a "$BUNDLE" "$APP_HOME/LlamaDesk.new"
    rm -rf "$APP_HOME/LlamaDesk"
    mv "$APP_HOME/LlamaDesk.new" "$APP_HOME/LlamaDesk"
    cp "$SCRIPT_DIR/install.sh" "$APP_HOME/install.sh"
    cp "$entry" "$APP_HOME/llamadesk.desktop"
    printf '#!/bin/sh\nexec "%s" --uninstall "$@"\n' "$APP_HOME/install.sh" > "$APP_HOME/uninstall.sh"
    chmod +x "$APP_HOME/install.sh" "$APP_HOME/uninstall.sh"

    ln -sfn "$binary" "$LAUNCHER"

    for size in $ICON_SIZES; do
        if [ -f "$icons/llamadesk-$size.png" ]; then
            mkdir -p "$ICON_THEME/${size}x${size}/apps"
            cp "$icons/llamadesk-$size.png" "$ICON_THEME/${size}x${size}/apps/llamadesk.png"
        fi
    done
    if [ -f "$icons/llamadesk.svg" ]; then
        mkdir -p "$ICON_THEME/scalable/apps"
        cp "$icons/llamadesk.svg" "$ICON_THEME/scalable/apps/llamadesk.svg"
    fi

    write_desktop_entry "$entry" "$binary" "$DESKTOP_FILE"
    refresh_desktop_caches

    echo "LlamaDesk is installed: open it from your applications menu, or run '$LAUNCHER'."
    case ":$PATH:" in *":$BIN_DIR:"*) ;; *) echo "(Add $BIN_DIR to PATH to start it by name from a terminal.)" ;; esac
    echo "To remove it: $APP_HOME/uninstall.sh"
}

if [ "$ACTION" = uninstall ]; then uninstall; else install_app; fi
