"""Where LlamaDesk keeps things: per-user folders (platformdirs) and the shipped resources."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import platformdirs

APP_NAME = "LlamaDesk"


def _override(variable: str) -> Path | None:
    value = os.environ.get(variable)
    return Path(value) if value else None


def data_dir() -> Path:
    """Chats, settings and the app's own models. LLAMADESK_HOME moves everything (tests, portable use)."""
    home = _override("LLAMADESK_HOME")
    return home / "data" if home else Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def cache_dir() -> Path:
    home = _override("LLAMADESK_HOME")
    return home / "cache" if home else Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def log_dir() -> Path:
    home = _override("LLAMADESK_HOME")
    return home / "logs" if home else Path(platformdirs.user_log_dir(APP_NAME, appauthor=False))


def models_dir() -> Path:
    return data_dir() / "models"


def resources_dir() -> Path:
    """resources/ beside the packages in a checkout, or inside a PyInstaller bundle."""
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        return Path(bundle) / "resources"
    return Path(__file__).resolve().parents[2] / "resources"
