"""The curated catalog of chat models (resources/catalog.json), refreshed from the hub, and its fit check.

The shipped catalog works offline: repositories, their quantisation files, approximate sizes and, for the files
whose header we could read, their plan inputs (core.models.plan_inputs.PlanInputs: what the planner needs of the
header, ~2 KB), so those files get a verdict at once with no network. When online, ``refresh`` replaces each
repository's file list with the hub's (exact sizes, SHA-256, split parts) and each file's plan inputs with ones read
from its real header (once per SHA-256), and keeps that in cache_dir()/catalog-refresh.json, so the next start offline
still has it.

Its files are fit-checked like any other (core/models/fit_check.py): from their plan inputs, else their remote headers.

A vision model names its projector (``"projector": {"file", "size" or "approx_size", "sha256", "info",
"info_source"}``): it is downloaded with every file of the model, and its ``info`` (core.fit.projector.ProjectorInfo's
figures, read from its header by tools/catalog_plan_inputs.py) counts it in the offline verdict, weights and image
buffer; without ``info`` the fit check reads its header from the hub.
"""
from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from core.fit.projector import ProjectorError, ProjectorInfo
from core.models import fit_check, hub, safe_names
from core.platform import locations
from core.models.fit_check import FileRef, ProjectorRef
from core.models.plan_inputs import PlanInputs
from core.models.projectors import is_projector_name
from core.models.remote_headers import HeaderCache

log = logging.getLogger(__name__)

SCHEMA = 1
REFRESH_MAX_AGE_SECONDS = 24 * 3600


class CatalogError(Exception):
    """The catalog file is missing or malformed; the message names what is wrong."""


@dataclass(frozen=True)
class CatalogFile:
    """One downloadable quantisation of a catalog model (several ``parts`` when split)."""

    filename: str
    quant: str | None
    size: int | None
    size_is_exact: bool = False
    sha256: str | None = None
    parts: tuple[str, ...] = ()
    plan_inputs: PlanInputs | None = None
    plan_inputs_source: str | None = None    # where they came from: the hub header (and its SHA-256), a stub ...

    @property
    def all_parts(self) -> tuple[str, ...]:
        return self.parts or (self.filename,)


@dataclass(frozen=True)
class CatalogProjector:
    """A vision model's projector (mmproj file), downloaded with whichever of the model's files is picked."""

    filename: str
    size: int | None
    size_is_exact: bool = False
    sha256: str | None = None
    info: ProjectorInfo | None = None        # its figures, precomputed from its header (counted offline)
    info_source: str | None = None           # where they came from

    def ref(self, repo_id: str, revision: str) -> ProjectorRef:
        return ProjectorRef(self.filename, repo_id, revision, self.sha256, self.size, info=self.info)


@dataclass(frozen=True)
class CatalogModel:
    id: str
    name: str
    family: str
    parameters: str
    repo_id: str
    license: str
    description: str
    files: tuple[CatalogFile, ...]
    tags: tuple[str, ...] = ()
    gated: bool = False
    revision: str = "main"
    projector: CatalogProjector | None = None   # set for a vision model: it can look at images with it


@dataclass(frozen=True)
class Catalog:
    schema: int
    updated: str
    models: tuple[CatalogModel, ...]
    refreshed_at: float | None = None
    plan_inputs_source: str = ""             # the catalog's note on where its files' plan inputs come from

    def find(self, model_id: str) -> CatalogModel | None:
        return next((m for m in self.models if m.id == model_id), None)

    def files(self) -> list[tuple[CatalogModel, CatalogFile]]:
        return [(m, f) for m in self.models for f in m.files]


# -- loading and validating -----------------------------------------------------------------------------------------
def shipped_catalog_path() -> Path:
    return locations.resources_dir() / "catalog.json"


def refresh_cache_path() -> Path:
    return locations.cache_dir() / "catalog-refresh.json"


def load_catalog(path: Path | None = None, *, use_refresh_cache: bool = True) -> Catalog:
    """The shipped catalog, with the last hub refresh applied when one is cached. Works offline."""
    source = path or shipped_catalog_path()
    try:
        data = json.loads(Path(source).read_text(encoding="utf-8"))
    except OSError as error:
        raise CatalogError(f"Cannot read the model catalog at {source}: {error.strerror or error}.") from error
    except ValueError as error:
        raise CatalogError(f"The model catalog at {source} is not valid JSON: {error}.") from error
    catalog = parse_catalog(data, str(source))
    if use_refresh_cache:
        catalog = _apply_refresh(catalog, _read_refresh_cache())
    return catalog


def parse_catalog(data: Any, source: str = "catalog") -> Catalog:
    if not isinstance(data, dict):
        raise CatalogError(f"{source}: the catalog must be a JSON object.")
    if data.get("schema") != SCHEMA:
        raise CatalogError(f"{source}: catalog schema {data.get('schema')!r} is not supported (expected {SCHEMA}).")
    raw_models = data.get("models")
    if not isinstance(raw_models, list) or not raw_models:
        raise CatalogError(f"{source}: 'models' must be a non-empty list.")
    models = tuple(_parse_model(item, f"{source}: model #{i + 1}") for i, item in enumerate(raw_models))
    ids = [m.id for m in models]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise CatalogError(f"{source}: model ids must be unique; repeated: {', '.join(duplicates)}.")
    return Catalog(SCHEMA, str(data.get("updated", "")), models, plan_inputs_source=str(data.get("plan_inputs_source", "")))


def _text(item: dict, key: str, where: str, default: str | None = None) -> str:
    value = item.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise CatalogError(f"{where}: '{key}' must be a non-empty string.")
    return value


def _parse_model(item: Any, where: str) -> CatalogModel:
    if not isinstance(item, dict):
        raise CatalogError(f"{where}: must be an object.")
    repo_id = _text(item, "repo", where)
    if repo_id.count("/") != 1:
        raise CatalogError(f"{where}: 'repo' must look like owner/name, not {repo_id!r}.")
    try:
        safe_names.check_repo_id(repo_id)
        safe_names.check_revision(item.get("revision", "main"))
    except safe_names.UnsafeName as error:
        raise CatalogError(f"{where}: {error}") from error
    files = item.get("files")
    if not isinstance(files, list) or not files:
        raise CatalogError(f"{where}: 'files' must be a non-empty list.")
    return CatalogModel(
        id=_text(item, "id", where), name=_text(item, "name", where), family=_text(item, "family", where),
        parameters=_text(item, "parameters", where), repo_id=repo_id, license=_text(item, "license", where),
        description=_text(item, "description", where),
        files=tuple(_parse_file(f, f"{where} file #{i + 1}") for i, f in enumerate(files)),
        tags=tuple(str(t) for t in item.get("tags", [])), gated=bool(item.get("gated", False)),
        revision=_text(item, "revision", where, "main"),
        projector=_parse_projector(item["projector"], f"{where} projector") if "projector" in item else None)


def _parse_file(item: Any, where: str) -> CatalogFile:
    if not isinstance(item, dict):
        raise CatalogError(f"{where}: must be an object.")
    filename = _text(item, "file", where)
    parts = tuple(item.get("parts", []))
    for name in (filename, *parts):
        _check_gguf_name(name, where)
    size, exact = _size(item, where)
    _check_sha256(item.get("sha256"), filename, where)
    inputs = item.get("plan_inputs")
    if inputs is not None and not isinstance(inputs, dict):
        raise CatalogError(f"{where}: 'plan_inputs' must be an object.")
    return CatalogFile(filename, item.get("quant") or hub.quant_of(filename), size, exact,
                       item.get("sha256"), parts, PlanInputs(inputs) if inputs else None,
                       item.get("plan_inputs_source") if inputs else None)


def _parse_projector(item: Any, where: str) -> CatalogProjector:
    if not isinstance(item, dict):
        raise CatalogError(f"{where}: must be an object.")
    filename = _text(item, "file", where)
    _check_gguf_name(filename, where)
    if not is_projector_name(filename):
        raise CatalogError(f"{where}: {filename!r} is not a projector (an mmproj file).")
    size, exact = _size(item, where)
    _check_sha256(item.get("sha256"), filename, where)
    info = None
    if item.get("info") is not None:
        try:
            info = ProjectorInfo.from_json(item["info"], filename)
        except ProjectorError as error:
            raise CatalogError(f"{where}: {error}") from error
    return CatalogProjector(filename, size, exact, item.get("sha256"), info,
                            item.get("info_source") if info is not None else None)


def _check_gguf_name(name: str, where: str) -> None:
    try:
        hub.check_safe_filename(name)
    except hub.UnsafeFileName as error:
        raise CatalogError(f"{where}: {error}") from error
    if not name.lower().endswith(".gguf"):
        raise CatalogError(f"{where}: {name!r} is not a .gguf file.")


def _size(item: dict, where: str) -> tuple[int | None, bool]:
    """(size, whether it is exact): 'size' is the hub's, 'approx_size' an estimate."""
    exact, approx = item.get("size"), item.get("approx_size")
    size = exact if exact is not None else approx
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size <= 0):
        raise CatalogError(f"{where}: the size must be a positive whole number of bytes.")
    return size, exact is not None


def _check_sha256(value: Any, filename: str, where: str) -> None:
    if value is None:
        return
    try:
        safe_names.check_sha256(value, where=filename)
    except (safe_names.UnsafeName, TypeError) as error:
        raise CatalogError(f"{where}: {error}") from error


# -- refreshing from the hub ----------------------------------------------------------------------------------------
def refresh(catalog: Catalog, *, max_age: float = REFRESH_MAX_AGE_SECONDS, force: bool = False,
            workers: int = 4) -> Catalog:
    """Update each repository's files from the hub (sizes, SHA-256, splits); offline or on errors keep what we had."""
    cache = _read_refresh_cache()
    if hub.is_offline():
        return _apply_refresh(catalog, cache)
    now = time.time()
    stale = [m for m in catalog.models
             if force or now - cache.get(m.repo_id, {}).get("fetched_at", 0) > max_age]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        listings = pool.map(lambda m: _listing_or_none(m, cache.get(m.repo_id)), stale)
        for model, listing in zip(stale, listings):
            if listing is not None:
                cache[model.repo_id] = listing
    _write_refresh_cache(cache)
    return _apply_refresh(catalog, cache)


def _listing_or_none(model: CatalogModel, known: dict | None = None) -> dict | None:
    try:
        listing = hub.list_files(model.repo_id, model.revision)
    except hub.HubError as error:
        log.warning("catalog refresh: %s", error)
        return None
    earlier = {f.get("file"): f for f in (known or {}).get("files", [])}
    curated = {f.filename for f in model.files}
    files = []
    for m in listing.models:
        if not m.complete or m.is_projector:
            continue
        entry = {"file": m.first_file.filename, "quant": m.quant, "size": m.size, "sha256": m.first_file.sha256,
                 "parts": [p.filename for p in m.parts] if m.is_split else []}
        if entry["file"] in curated:  # the catalog's own files carry plan inputs; others are checked from headers
            entry.update(_fresh_plan_inputs(model, entry, earlier.get(entry["file"])))
        files.append(entry)
    refreshed = {"commit": listing.commit, "fetched_at": time.time(), "files": files}
    named = model.projector.filename if model.projector else None
    for m in listing.models:
        if named and m.is_projector and m.complete and m.name == named:
            refreshed["projector"] = {"file": m.name, "size": m.size, "sha256": m.first_file.sha256}
    return refreshed


def _fresh_plan_inputs(model: CatalogModel, entry: dict, earlier: dict | None) -> dict:
    """Plan inputs read from the file's real header: kept from the last refresh while its SHA-256 is the same."""
    if earlier and earlier.get("plan_inputs") and earlier.get("sha256") == entry["sha256"] and entry["sha256"]:
        return {"plan_inputs": earlier["plan_inputs"], "plan_inputs_source": earlier.get("plan_inputs_source")}
    ref = FileRef(entry["file"], model.repo_id, model.revision, tuple(entry["parts"]) or (entry["file"],))
    try:
        info, _ = fit_check.model_info(ref, HeaderCache())
    except Exception as error:  # noqa: BLE001 - a file without plan inputs is checked from its header later
        log.info("catalog refresh: no plan inputs for %s/%s: %s", model.repo_id, entry["file"], error)
        return {}
    return {"plan_inputs": PlanInputs.of(info).to_json(),
            "plan_inputs_source": f"hub header, sha256 {entry['sha256'] or 'unknown'}"}


def _apply_refresh(catalog: Catalog, cache: dict) -> Catalog:
    models, newest = [], None
    for model in catalog.models:
        entry = cache.get(model.repo_id)
        if not entry or not entry.get("files"):
            models.append(model)
            continue
        if entry.get("commit") is not None and not safe_names.is_commit(entry["commit"]):
            log.warning("ignoring the cached refresh of %s: its commit %r is not a commit hash", model.repo_id,
                        entry["commit"])
            models.append(model)
            continue
        try:
            files = tuple(_parse_file(f, f"refreshed {model.repo_id}") for f in entry["files"])
        except CatalogError as error:
            log.warning("ignoring the cached refresh of %s: %s", model.repo_id, error)
            models.append(model)
            continue
        models.append(replace(model, files=_curated_first(model.files, _with_shipped_inputs(model.files, files)),
                              projector=_refreshed_projector(model.projector, entry.get("projector"))))
        newest = max(newest or 0, entry.get("fetched_at", 0))
    return replace(catalog, models=tuple(models), refreshed_at=newest)


def _refreshed_projector(shipped: CatalogProjector | None, fresh: Any) -> CatalogProjector | None:
    """The curated projector with the hub's exact size and SHA-256; its shipped figures are kept unless the hub's
    file is another one than they were read from (a different SHA-256): then the fit check reads its header."""
    if shipped is None or not isinstance(fresh, dict) or fresh.get("file") != shipped.filename:
        return shipped
    try:
        size, exact = _size(fresh, f"refreshed projector {shipped.filename}")
        _check_sha256(fresh.get("sha256"), shipped.filename, f"refreshed projector {shipped.filename}")
    except CatalogError as error:
        log.warning("ignoring the refreshed projector: %s", error)
        return shipped
    changed = shipped.sha256 is not None and fresh.get("sha256") not in (None, shipped.sha256)
    return replace(shipped, size=size or shipped.size, size_is_exact=exact,
                   sha256=fresh.get("sha256") or shipped.sha256,
                   info=None if changed else shipped.info, info_source=None if changed else shipped.info_source)


def _with_shipped_inputs(curated: Sequence[CatalogFile], fresh: Sequence[CatalogFile]) -> list[CatalogFile]:
    """Fresh files keep the shipped plan inputs where the refresh could not read new ones."""
    shipped = {f.filename: f for f in curated if f.plan_inputs is not None}
    return [f if f.plan_inputs is not None or f.filename not in shipped
            else replace(f, plan_inputs=shipped[f.filename].plan_inputs,
                         plan_inputs_source=shipped[f.filename].plan_inputs_source)
            for f in fresh]


def _curated_first(curated: Sequence[CatalogFile], fresh: Sequence[CatalogFile]) -> tuple[CatalogFile, ...]:
    """The hub's files, those the catalog names first (in its order), then the others by name."""
    order = {f.filename: i for i, f in enumerate(curated)}
    return tuple(sorted(fresh, key=lambda f: (order.get(f.filename, len(order)), f.filename.lower())))


def _read_refresh_cache() -> dict:
    try:
        data = json.loads(refresh_cache_path().read_text())
        return data.get("repos", {}) if data.get("schema") == SCHEMA else {}
    except (OSError, ValueError, AttributeError):
        return {}


def _write_refresh_cache(repos: dict) -> None:
    path = refresh_cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        partial.write_text(json.dumps({"schema": SCHEMA, "repos": repos}, indent=1))
        os.replace(partial, path)
    except OSError as error:
        log.warning("could not save the catalog refresh to %s: %s", path, error)


# -- what the fit check takes -----------------------------------------------------------------------------------------
def file_refs(catalog: Catalog) -> list[FileRef]:
    """Every catalog file as core.models.fit_check checks it (from its plan inputs, else its header on the hub)."""
    return [FileRef(f.filename, model.repo_id, model.revision, f.all_parts,
                    (f.sha256,) if not f.parts else (), f.quant, f.size, plan_inputs=f.plan_inputs,
                    projector=model.projector.ref(model.repo_id, model.revision) if model.projector else None)
            for model, f in catalog.files()]
