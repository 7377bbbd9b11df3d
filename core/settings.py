"""User settings: one declared schema, versioned, saved atomically in the app's data folder.

A setting that is missing, of the wrong type or out of range falls back to its default (logged), so a
damaged file never stops the app; an unreadable file is kept aside as settings.json.broken.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from core import locations

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MAX_RECENT_MODELS = 10


@dataclass(frozen=True)
class Settings:
    recent_models: tuple[str, ...] = ()
    system_prompt: str = "You are a helpful assistant."
    context_length: int = 4096
    threads: int = 0  # 0: the engine picks (physical cores)
    model_folders: tuple[str, ...] = field(default_factory=tuple)

    def with_recent_model(self, path: str) -> "Settings":
        recent = (path, *[p for p in self.recent_models if p != path])[:MAX_RECENT_MODELS]
        return replace(self, recent_models=recent)

    def without_recent_model(self, path: str) -> "Settings":
        return replace(self, recent_models=tuple(p for p in self.recent_models if p != path))


_LIMITS = {"context_length": (256, 1 << 20), "threads": (0, 1024)}


def settings_path() -> Path:
    return locations.data_dir() / "settings.json"


def load() -> Settings:
    path = settings_path()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Settings()
    except (OSError, ValueError) as error:
        log.warning("settings file %s is unreadable (%s); using defaults and keeping it aside", path, error)
        _keep_aside(path)
        return Settings()
    if not isinstance(raw, dict):
        _keep_aside(path)
        return Settings()
    return _from_dict(raw.get("values", {}))


def save(settings: Settings) -> None:
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    values = {f.name: getattr(settings, f.name) for f in fields(Settings)}
    document = json.dumps({"schema": SCHEMA_VERSION, "values": values}, indent=2, default=list)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".settings-", suffix=".json")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(document)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _from_dict(values: object) -> Settings:
    defaults = Settings()
    if not isinstance(values, dict):
        return defaults
    accepted = {}
    for spec in fields(Settings):
        if spec.name not in values:
            continue
        value = _coerce(spec.name, values[spec.name], getattr(defaults, spec.name))
        if value is None:
            log.warning("setting %r has an invalid value %r; using the default", spec.name, values[spec.name])
            continue
        accepted[spec.name] = value
    return replace(defaults, **accepted)


def _coerce(name: str, value: object, default: object) -> object | None:
    if isinstance(default, tuple):
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return tuple(value)
        return None
    if isinstance(default, bool) or type(value) is not type(default):
        return value if type(value) is type(default) else None
    low, high = _LIMITS.get(name, (None, None))
    if low is not None and not low <= value <= high:
        return None
    return value


def _keep_aside(path: Path) -> None:
    try:
        path.replace(path.with_suffix(".json.broken"))
    except OSError:
        pass
