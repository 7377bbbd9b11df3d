"""The local library: every GGUF model already on this computer, found where it lies (nothing is copied).

Sources: the Hugging Face cache (through huggingface_hub's cache scanner), LlamaDesk's own models folder, LM
Studio's model folders, Ollama's blobs (named through its manifests), and folders the user adds. Each model is
inspected from its header; a file that cannot be read keeps its error on its entry instead of raising.
"""
from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from core.models import hub, safe_names
from core.models.projectors import is_projector_name, pick_projector
from core.platform import locations
from core.gguf.reader import GGUFError, ModelInfo, read_model_info
from core.models.remote_headers import combine_split, read_split_part_tensors

log = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"
_SPLIT = re.compile(r"^(?P<base>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
_MAX_WALK_DEPTH = 6


class LibraryError(Exception):
    """Something about the local library failed; the message is a sentence a user can read."""


@dataclass(frozen=True)
class LocalModel:
    """One model on disk. ``path`` is what to load (the first part of a split model)."""

    name: str
    path: Path
    source: str                      # "huggingface" | "app" | "lmstudio" | "ollama" | "folder"
    size: int
    parts: tuple[Path, ...] = ()
    repo_id: str | None = None
    info: ModelInfo | None = field(default=None, compare=False)
    error: str | None = None
    projector: Path | None = None    # the mmproj file beside it that lets it see images (core.models.projectors)

    @property
    def usable(self) -> bool:
        return self.info is not None and self.error is None

    @property
    def is_projector(self) -> bool:
        """A vision projector (mmproj): it goes with a model, it does not chat on its own."""
        return is_projector_name(self.path.name)


@dataclass(frozen=True)
class LibrarySources:
    """Where to look; defaults are the usual places on this machine."""

    hf_cache: Path | None = None
    app_dir: Path | None = None
    lmstudio_dirs: tuple[Path, ...] | None = None
    ollama_dir: Path | None = None
    user_dirs: tuple[Path, ...] = ()

    def resolved(self) -> "LibrarySources":
        home = Path.home()
        return LibrarySources(
            hf_cache=self.hf_cache or hub.hf_cache_dir(),
            app_dir=self.app_dir or locations.models_dir(),
            lmstudio_dirs=self.lmstudio_dirs if self.lmstudio_dirs is not None else
            (home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models"),
            ollama_dir=self.ollama_dir or Path(os.environ.get("OLLAMA_MODELS") or home / ".ollama" / "models"),
            user_dirs=self.user_dirs,
        )


# -- scanning -------------------------------------------------------------------------------------------------------
def scan(sources: LibrarySources = LibrarySources(), *, inspect: bool = True) -> list[LocalModel]:
    """All local models, each inspected from its header (errors kept per entry). Never raises for one bad file."""
    where = sources.resolved()
    found: list[LocalModel] = []
    found += _from_hf_cache(where.hf_cache)
    found += _from_folder(where.app_dir, "app")
    for folder in where.lmstudio_dirs or ():
        found += _from_folder(folder, "lmstudio")
    found += _from_ollama(where.ollama_dir)
    for folder in where.user_dirs:
        found += _from_folder(folder, "folder")
    unique = pair_projectors(_dedupe(found))
    return [_inspect(model) for model in unique] if inspect else unique


def is_embedding_model(info: ModelInfo | None) -> bool:
    """A model that makes vectors, not text: its header declares a pooling type and it has no chat template."""
    return info is not None and info.arch_value("pooling_type") not in (None, 0) and not info.chat_template


def embedding_model_path(user_dirs: Iterable[str] = ()) -> Path | None:
    """The library's embedding model (the smallest, when there are several), for searching documents by meaning;
    looks in the usual places and `user_dirs`. Reads every model's header: off the UI thread."""
    sources = LibrarySources(user_dirs=tuple(Path(folder) for folder in user_dirs))
    found = [model for model in scan(sources) if is_embedding_model(model.info)]
    return min(found, key=lambda model: model.size).path if found else None


def pair_projectors(models: list[LocalModel]) -> list[LocalModel]:
    """Each model with the projector lying in the same place: the same Hugging Face repository, else the same
    folder. The projectors stay in the list too (is_projector tells them apart)."""
    def place(model: LocalModel) -> tuple:
        return ("repo", model.repo_id) if model.repo_id else ("folder", str(model.path.parent))

    projectors: dict[tuple, dict[str, Path]] = {}
    for model in models:
        if model.is_projector:
            projectors.setdefault(place(model), {})[model.path.name] = model.path
    if not projectors:
        return models
    paired = []
    for model in models:
        beside = projectors.get(place(model), {})
        picked = pick_projector(model.path.name, beside)
        paired.append(replace(model, projector=beside[picked]) if picked is not None else model)
    return paired


def _dedupe(models: Iterable[LocalModel]) -> list[LocalModel]:
    seen: set[Path] = set()
    kept = []
    for model in models:
        # HF snapshot links to one shared blob are distinct models; elsewhere a link is the same file twice.
        real = model.path.absolute() if model.source == "huggingface" else model.path.resolve()
        if real in seen:
            continue
        seen.add(real)
        kept.append(model)
    return kept


def _inspect(model: LocalModel) -> LocalModel:
    if model.error is not None:
        return model
    try:
        info = read_model_info(model.path)
        later = model.parts[1:]
        if later:  # a split model: every part's tensors count
            info = combine_split(info, [read_split_part_tensors(p) for p in later],
                                 [p.stat().st_size for p in later])
    except GGUFError as error:
        return replace(model, error=str(error))
    except OSError as error:
        return replace(model, error=f"Cannot read {model.path}: {error.strerror or error}")
    return replace(model, info=info)


def _from_hf_cache(cache: Path | None) -> list[LocalModel]:
    if cache is None or not cache.is_dir():
        return []
    from huggingface_hub import scan_cache_dir

    try:
        info = scan_cache_dir(cache)
    except Exception as error:  # a damaged cache must not hide the other sources
        log.warning("could not scan the Hugging Face cache at %s: %s", cache, error)
        return []
    files: dict[tuple[str, str], list[tuple[str, Path, int]]] = {}
    for repo in info.repos:
        if repo.repo_type != "model":
            continue
        for revision in repo.revisions:
            for f in revision.files:
                if f.file_name.lower().endswith(".gguf"):
                    relative = f.file_path.relative_to(revision.snapshot_path).as_posix()
                    files.setdefault((repo.repo_id, revision.commit_hash), []).append(
                        (relative, f.file_path, f.size_on_disk))
    models = []
    for (repo_id, _commit), entries in files.items():
        for name, paths, size in _group_splits((rel, path, size) for rel, path, size in entries):
            models.append(LocalModel(name, paths[0], "huggingface", size, tuple(paths), repo_id=repo_id))
    return models


def _from_folder(folder: Path | None, source: str) -> list[LocalModel]:
    if folder is None or not folder.is_dir():
        return []
    entries = []
    for path in _walk_gguf(folder):
        try:
            entries.append((path.relative_to(folder).as_posix(), path, path.stat().st_size))
        except OSError:
            continue
    return [LocalModel(name, paths[0], source, size, tuple(paths)) for name, paths, size in _group_splits(entries)]


def _walk_gguf(folder: Path) -> Iterator[Path]:
    base_depth = len(folder.parts)
    for root, dirs, files in os.walk(folder, followlinks=False):
        if len(Path(root).parts) - base_depth >= _MAX_WALK_DEPTH:
            dirs[:] = []
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.lower().endswith(".gguf") and not name.startswith("."):
                yield Path(root) / name


def _group_splits(entries: Iterable[tuple[str, Path, int]]) -> list[tuple[str, list[Path], int]]:
    """[(display name, [paths in order], total size)]: split parts become one model named after their base."""
    singles, splits = [], {}
    for relative, path, size in entries:
        match = _SPLIT.match(path.name)
        if match:
            key = (str(path.parent), match["base"])
            splits.setdefault(key, []).append((int(match["index"]), relative, path, size))
        else:
            singles.append((relative, [path], size))
    for (_parent, base), parts in splits.items():
        parts.sort()
        relative = parts[0][1]
        name = relative[: len(relative) - len(parts[0][2].name)] + base + ".gguf"
        singles.append((name, [p[2] for p in parts], sum(p[3] for p in parts)))
    return sorted(singles, key=lambda item: item[0].lower())


# -- Ollama ---------------------------------------------------------------------------------------------------------
def _from_ollama(root: Path | None) -> list[LocalModel]:
    manifests = root / "manifests" if root else None
    if manifests is None or not manifests.is_dir():
        return []
    models = []
    for manifest in sorted(p for p in manifests.rglob("*") if p.is_file()):
        model = _ollama_model(root, manifest)  # type: ignore[arg-type]
        if model is not None:
            models.append(model)
    return models


def ollama_name(manifests: Path, manifest: Path) -> str:
    """``registry.ollama.ai/library/llama3.2/3b`` -> ``llama3.2:3b``; other namespaces keep their path."""
    parts = manifest.relative_to(manifests).parts
    if len(parts) < 2:
        return manifest.name
    *where, tag = parts
    if where[:2] == ["registry.ollama.ai", "library"]:
        where = where[2:]
    elif where[:1] == ["registry.ollama.ai"]:
        where = where[1:]
    return f"{'/'.join(where)}:{tag}"


def _ollama_model(root: Path, manifest: Path) -> LocalModel | None:
    name = ollama_name(root / "manifests", manifest)
    try:
        layers = json.loads(manifest.read_text()).get("layers", [])
        layer = next(item for item in layers if item.get("mediaType") == OLLAMA_MODEL_LAYER)
        digest = str(layer["digest"])
    except (OSError, ValueError, AttributeError, StopIteration, KeyError, TypeError):
        log.info("skipping Ollama manifest without a model layer: %s", manifest)
        return None
    try:
        blob = safe_names.inside(root / "blobs", root / "blobs" / safe_names.check_ollama_digest(
            digest, where=f"Ollama manifest {manifest}"))
    except safe_names.UnsafeName as error:
        return LocalModel(name, manifest, "ollama", 0, error=str(error))
    if not blob.is_file():
        return LocalModel(name, blob, "ollama", 0, error=f"Ollama's blob for {name} is missing ({blob.name}).")
    return LocalModel(name, blob, "ollama", blob.stat().st_size, (blob,))


# -- deleting -------------------------------------------------------------------------------------------------------
def delete(model: LocalModel, sources: LibrarySources = LibrarySources()) -> list[Path]:
    """Delete a model's files from disk (the caller has asked the user). Returns what was removed.

    Hugging Face cache: the snapshot links, and each blob no other snapshot still uses. Ollama: the manifests
    naming the blob, and the blob. Folders: the files.
    """
    where = sources.resolved()
    try:
        if model.source == "huggingface":
            return _delete_hf(model)
        if model.source == "ollama":
            return _delete_ollama(model, where.ollama_dir)  # type: ignore[arg-type]
        removed = []
        for part in model.parts or (model.path,):
            part.unlink()
            removed.append(part)
        return removed
    except OSError as error:
        raise LibraryError(f"Could not delete {model.name}: {error.strerror or error}.") from error
    except safe_names.UnsafeName as error:
        raise LibraryError(f"Could not delete {model.name}: {error}") from error


def _delete_hf(model: LocalModel) -> list[Path]:
    """Each snapshot link, and its blob when no other snapshot uses it; a link that leads out of the repository's
    blobs folder loses only the link (what it points at is not the cache's to delete)."""
    removed = []
    for pointer in model.parts or (model.path,):
        blob = pointer.resolve()
        repo_dir = _hf_repo_dir(pointer)
        pointer.unlink()
        removed.append(pointer)
        if blob != pointer and blob.exists() and _is_cache_blob(repo_dir, blob) \
                and not _blob_still_used(repo_dir, blob):
            blob.unlink()
            removed.append(blob)
    return removed


def _is_cache_blob(repo_dir: Path, blob: Path) -> bool:
    try:
        safe_names.inside(repo_dir / "blobs", blob)
    except safe_names.UnsafeName as error:
        log.warning("not deleting %s: %s", blob, error)
        return False
    return True


def _hf_repo_dir(pointer: Path) -> Path:
    for parent in pointer.parents:
        if parent.name == "snapshots":
            return parent.parent
    raise LibraryError(f"{pointer} is not inside a Hugging Face cache snapshot.")


def _blob_still_used(repo_dir: Path, blob: Path) -> bool:
    for link in (repo_dir / "snapshots").rglob("*"):
        if link.is_symlink() and link.resolve() == blob:
            return True
    return False


def _delete_ollama(model: LocalModel, root: Path) -> list[Path]:
    removed = []
    blob_name = safe_names.check_ollama_digest(model.path.name, where=f"The Ollama model {model.name}")
    safe_names.inside(root / "blobs", model.path)
    digest = blob_name.replace("-", ":", 1)
    for manifest in (root / "manifests").rglob("*"):
        if manifest.is_file() and ollama_name(root / "manifests", manifest) == model.name:
            manifest.unlink()
            removed.append(manifest)
    still_named = any(digest in m.read_text(errors="replace")
                      for m in (root / "manifests").rglob("*") if m.is_file())
    if not still_named and model.path.exists():
        model.path.unlink()
        removed.append(model.path)
    return removed
