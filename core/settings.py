"""User settings: one declared schema, versioned, saved atomically in the app's data folder.

A setting that is missing, of the wrong type or out of range falls back to its default (logged), so a
damaged file never stops the app; an unreadable file is kept aside as settings.json.broken. A file
written by an earlier version is migrated on load (its values kept) and saved in the current version
by the next save.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from core.gguf.kv_types import OFFERED_KV_TYPES, needs_flash_attention
from core.platform import locations

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
MAX_RECENT_MODELS = 10
MiB = 1024 * 1024

KV_TYPES = OFFERED_KV_TYPES
THEMES = ("system", "light", "dark")
ALL_GPU_LAYERS = -1
MIN_CONTEXT, MAX_CONTEXT = 256, 1 << 20
MAX_THREADS = 1024
MAX_GPU_LAYERS = 4096
MAX_SAFETY_MARGIN_MIB = 64 * 1024


@dataclass(frozen=True)
class RemoteEndpoint:
    """An OpenAI-compatible server whose models the user chats with (core.engine.remote_client)."""

    url: str                  # e.g. http://192.168.1.30:8080 or http://host:11434/v1
    api_key: str = ""
    name: str = ""            # what the user calls it; the URL when empty

    @property
    def label(self) -> str:
        return self.name or self.url

    @property
    def host(self) -> str:
        """The computer the model runs on, as the user wrote it ('192.168.1.30', 'gpu-box:8080')."""
        return urlsplit(self.url).netloc or self.url


def endpoint_url_problem(url: str) -> str | None:
    """Why `url` cannot be an endpoint's address, in a sentence; None when it can."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        return f"'{url}' is not an endpoint address: write it as http://HOST:PORT (or https://...)."
    return None


@dataclass(frozen=True)
class Settings:
    recent_models: tuple[str, ...] = ()
    system_prompt: str = "You are a helpful assistant."
    context_length: int = 4096
    threads: int = 0  # 0: the engine picks (physical cores)
    model_folders: tuple[str, ...] = field(default_factory=tuple)
    gpu_layers: int | None = None  # None: Auto (the planner); a count: exactly that many; -1: all
    cpu_expert_layers: int | None = None  # MoE: None: Auto (the planner); a count: those layers' experts on the CPU
    kv_type: str = "f16"
    flash_attn: bool = True  # the planner and the engine assume it on; quantized KV caches need it
    safety_margin_mib: int = 1024  # kept free on each GPU by the planner
    learned_margin: bool = True    # once this machine's loads have taught one (core.fit.calibration), use it instead
    theme: str = "system"
    remote_endpoints: tuple[RemoteEndpoint, ...] = ()
    # The window's geometry, splitters and panels (opaque base64 strings and flags written by desktop/).
    window_state: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def safety_margin_bytes(self) -> int:
        return self.safety_margin_mib * MiB

    def with_recent_model(self, path: str) -> "Settings":
        recent = (path, *[p for p in self.recent_models if p != path])[:MAX_RECENT_MODELS]
        return replace(self, recent_models=recent)

    def without_recent_model(self, path: str) -> "Settings":
        return replace(self, recent_models=tuple(p for p in self.recent_models if p != path))


# --- the schema: what each value may be ---------------------------------------------------------------

_INVALID = object()


def _whole(low: int, high: int) -> Callable[[object], object]:
    def check(value: object) -> object:
        if type(value) is int and low <= value <= high:
            return value
        return _INVALID
    return check


def _one_of(choices: tuple[str, ...]) -> Callable[[object], object]:
    return lambda value: value if value in choices and isinstance(value, str) else _INVALID


def _text(value: object) -> object:
    return value if isinstance(value, str) else _INVALID


def _flag(value: object) -> object:
    return value if isinstance(value, bool) else _INVALID


def _texts(value: object) -> object:
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    return _INVALID


def _remote_endpoints(value: object) -> object:
    """A list of {"url", "api_key", "name"} objects, each with an http(s) URL."""
    if not isinstance(value, list):
        return _INVALID
    endpoints = []
    for item in value:
        if not isinstance(item, dict) or not all(isinstance(item.get(k, ""), str) for k in ("url", "api_key", "name")):
            return _INVALID
        if endpoint_url_problem(str(item.get("url", ""))) is not None:
            return _INVALID
        endpoints.append(RemoteEndpoint(item["url"], item.get("api_key", ""), item.get("name", "")))
    return tuple(endpoints)


def _window_state(value: object) -> object:
    if isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, (str, bool)) for k, v in value.items()):
        return dict(value)
    return _INVALID


def _auto_or_whole(name: str) -> Callable[[object], object]:
    """None (Auto: the planner chooses) or a whole number in the declared range of `name`."""
    return lambda value: None if value is None else _whole(*LIMITS[name])(value)


# The declared ranges and choices: the checks below and every control that edits a setting read them here.
LIMITS: dict[str, tuple[int, int]] = {
    "context_length": (MIN_CONTEXT, MAX_CONTEXT),
    "threads": (0, MAX_THREADS),
    "gpu_layers": (ALL_GPU_LAYERS, MAX_GPU_LAYERS),
    "cpu_expert_layers": (0, MAX_GPU_LAYERS),
    "safety_margin_mib": (0, MAX_SAFETY_MARGIN_MIB),
}
CHOICES: dict[str, tuple[str, ...]] = {"kv_type": KV_TYPES, "theme": THEMES}

_RULES: dict[str, Callable[[object], object]] = {
    "recent_models": _texts,
    "system_prompt": _text,
    "context_length": _whole(*LIMITS["context_length"]),
    "threads": _whole(*LIMITS["threads"]),
    "model_folders": _texts,
    "gpu_layers": _auto_or_whole("gpu_layers"),
    "cpu_expert_layers": _auto_or_whole("cpu_expert_layers"),
    "kv_type": _one_of(CHOICES["kv_type"]),
    "flash_attn": _flag,
    "safety_margin_mib": _whole(*LIMITS["safety_margin_mib"]),
    "learned_margin": _flag,
    "theme": _one_of(CHOICES["theme"]),
    "remote_endpoints": _remote_endpoints,
    "window_state": _window_state,
}


def _from_v1(values: dict) -> dict:
    """Version 1 had recent models, system prompt, context, threads and model folders: all kept as they are;
    the offload and theme settings it lacked start at their defaults."""
    return dict(values)


_MIGRATIONS: dict[int, Callable[[dict], dict]] = {1: _from_v1}  # version N -> version N + 1


# --- files --------------------------------------------------------------------------------------------

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
    values = raw.get("values", {})
    if not isinstance(values, dict):
        return Settings()
    return _from_dict(migrate(values, raw.get("schema", 1)))


def migrate(values: dict, version: object) -> dict:
    """The values of a file written in schema `version`, brought up to SCHEMA_VERSION."""
    if type(version) is not int or version < 1:
        log.warning("settings file has no usable schema version (%r); reading it as version 1", version)
        version = 1
    if version > SCHEMA_VERSION:
        log.warning("settings file is from a newer LlamaDesk (schema %d); reading what this version knows",
                    version)
    while version < SCHEMA_VERSION:
        values = _MIGRATIONS[version](values)
        version += 1
    return values


def save(settings: Settings) -> None:
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    values = {f.name: getattr(settings, f.name) for f in fields(Settings)}
    values["remote_endpoints"] = [asdict(endpoint) for endpoint in settings.remote_endpoints]
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


def _from_dict(values: dict) -> Settings:
    accepted = {}
    for spec in fields(Settings):
        if spec.name not in values:
            continue
        value = _RULES[spec.name](values[spec.name])
        if value is _INVALID:
            log.warning("setting %r has an invalid value %r; using the default", spec.name, values[spec.name])
            continue
        accepted[spec.name] = value
    return _consistent(replace(Settings(), **accepted))


def _consistent(settings: Settings) -> Settings:
    """A quantized KV cache needs flash attention (llama.cpp refuses it otherwise): turn it on."""
    if needs_flash_attention(settings.kv_type) and not settings.flash_attn:
        log.warning("a %s KV cache needs flash attention; turning flash attention on", settings.kv_type)
        return replace(settings, flash_attn=True)
    return settings


def _keep_aside(path: Path) -> None:
    try:
        path.replace(path.with_suffix(".json.broken"))
    except OSError:
        pass
