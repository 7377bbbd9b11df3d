"""The one fit check of a model file: on this computer (its header on disk) or on the hub (the plan inputs a catalog
ships for it, else its header alone, read by range requests and cached), planned for a machine and the user's offload
choice.

Every place that shows a verdict calls ``check_file``: the picker's tabs and details pane, ``llamadesk-cli files``,
``fit`` and ``models``, and (through core.fit.choice.plan_for_load) the load itself. So the same file under the same
settings gets the same verdict and figures everywhere.

A vision model's projector (``ProjectorRef``) is resolved here for all of them, one way for a local file and a hub
file: its figures from its header (read on disk, or by range requests through the same HeaderCache), so its weights
and its image-encoding buffer count before the download as after; a catalog's precomputed figures count without the
network. When a hub projector's header cannot be read, its listed size stands in and the plan says so.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from core.fit import dry_run
from core.fit.choice import OffloadChoice, capped_to_trained_context, plan_for_load
from core.fit.estimate import MemorySettings
from core.fit.planner import DEFAULT_GPU_MARGIN, Plan
from core.fit.projector import ProjectorError, ProjectorInfo, plan_with_projector, read_projector_info
from core.gguf.reader import GGUFError, ModelInfo, read_model_info
from core.machine.hardware import HardwareSnapshot
from core.models import hub
from core.models.plan_inputs import PlanInputs
from core.models.projectors import listed_projector_info
from core.models.remote_headers import HeaderCache, HeaderEntry, combine_split, write_sparse_stub
from core.platform import locations
from core.platform.units import format_bytes

log = logging.getLogger(__name__)

CHECK_WORKERS = 8
IMAGE_BUFFER_NOT_COUNTED = "its image buffer is not counted yet"


@dataclass(frozen=True)
class ProjectorRef:
    """A vision model's projector (mmproj file) as the fit check takes it: on this computer (``local_path``), or on
    the hub (``repo_id``), with its ``info`` already known when a catalog ships its figures."""

    filename: str
    repo_id: str | None = None
    revision: str = "main"
    sha256: str | None = None
    size: int | None = None
    local_path: Path | None = None
    info: ProjectorInfo | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ProjectorCount:
    """What a plan counts of a projector: ``info`` (None: nothing), and ``note``, a sentence when it counts less
    than the projector's whole figure."""

    info: ProjectorInfo | None
    note: str | None = None

    def to_json(self) -> dict:
        """What the CLI's --json prints of it."""
        info = self.info
        return {"file": info.source if info else None, "weights_bytes": info.weights_bytes if info else None,
                "image_buffer_counted": bool(info and info.from_header), "note": self.note}

    def sentence(self) -> str:
        if self.note or self.info is None:
            return self.note or ""
        return (f"{self.info.source}: its weights ({format_bytes(self.info.weights_bytes)}) and its image buffer "
                "are counted, from its header.")


@dataclass(frozen=True)
class FileRef:
    """Which file to check: a local file (``local_path``, its header perhaps already read into ``local_info``), or a
    file on the hub (``repo_id`` + ``parts``, all the parts of a split model, first part first), planned from the
    ``plan_inputs`` a catalog carries for it when it has them (no network), else from its header."""

    filename: str
    repo_id: str | None = None
    revision: str = "main"
    parts: tuple[str, ...] = ()
    sha256s: tuple[str | None, ...] = ()
    quant: str | None = None
    size: int | None = None
    local_path: Path | None = None
    local_info: ModelInfo | None = None
    local_error: str | None = None
    plan_inputs: PlanInputs | None = field(default=None, compare=False)
    projector: ProjectorRef | None = None     # a vision model's paired mmproj, counted with it

    @property
    def is_remote(self) -> bool:
        return self.local_path is None and self.repo_id is not None

    @property
    def all_parts(self) -> tuple[str, ...]:
        return self.parts or (self.filename,)


@dataclass(frozen=True)
class FitConditions:
    """What a verdict depends on besides the file: the machine, the user's offload choice and the GPU margin."""

    hardware: HardwareSnapshot
    choice: OffloadChoice = OffloadChoice()
    margin_bytes: int = DEFAULT_GPU_MARGIN


@dataclass(frozen=True)
class FileFit:
    """A file planned against a machine; ``plan`` is None (and ``error`` says why) when it could not be planned."""

    repo_id: str
    filename: str
    quant: str | None
    size: int | None
    plan: Plan | None = None
    error: str | None = None
    entries: tuple[HeaderEntry, ...] = field(default=(), compare=False)
    info: ModelInfo | None = field(default=None, compare=False)
    choice: OffloadChoice | None = None     # the choice as planned (its context capped at the trained one)
    projector: ProjectorCount | None = None  # what the plan counted of a vision model's projector

    @property
    def badge(self) -> str:
        if self.plan is None:
            return "Unknown: header not readable"
        return str(self.plan.verdict)

    @property
    def tokens_per_second(self) -> float | None:
        return self.plan.predicted_tokens_per_second if self.plan is not None else None


def model_info(ref: FileRef, cache: HeaderCache | None = None, entries: Sequence[HeaderEntry] = ()
               ) -> tuple[ModelInfo, tuple[HeaderEntry, ...]]:
    """The file's ModelInfo and, for a hub file, the cached header of each part (fetched now when not cached) —
    none for a hub file with plan inputs: those plan it without the network."""
    if not ref.is_remote:
        if ref.local_info is not None:
            return ref.local_info, ()
        if ref.local_error:
            raise ValueError(ref.local_error)
        if ref.local_path is None:
            raise ValueError(f"{ref.filename} has not been read yet.")
        return read_model_info(ref.local_path), ()
    if ref.plan_inputs is not None and not entries:
        return ref.plan_inputs.model_info(f"{ref.repo_id}/{ref.filename}"), ()
    cache = cache or HeaderCache()
    entries = tuple(entries) or remote_entries(ref, cache)
    first, *later = entries
    info = combine_split(cache.model_info(first), [e.part_tensors() for e in later], [e.file_size for e in later])
    return info, entries


def remote_entries(ref: FileRef, cache: HeaderCache) -> tuple[HeaderEntry, ...]:
    hashes = ref.sha256s if len(ref.sha256s) == len(ref.all_parts) else (None,) * len(ref.all_parts)
    return tuple(cache.get(ref.repo_id or "", part, ref.revision, sha256=sha)
                 for part, sha in zip(ref.all_parts, hashes))


def check_file(ref: FileRef, conditions: FitConditions, cache: HeaderCache | None = None,
               entries: Sequence[HeaderEntry] = ()) -> FileFit:
    """The verdict and figures for one file. Errors stay on the result: one bad file must not stop a list."""
    found: tuple[HeaderEntry, ...] = tuple(entries)
    counted = None
    try:
        info, found = model_info(ref, cache, entries)
        choice = capped_to_trained_context(conditions.choice, info)
        counted = resolve_projector(ref.projector, cache) if ref.projector is not None else None
        if counted is not None and counted.info is not None:
            plan, _ = plan_with_projector(info, counted.info, conditions.hardware, choice, conditions.margin_bytes)
        else:
            plan = plan_for_load(info, conditions.hardware, choice, conditions.margin_bytes)
    except Exception as error:  # noqa: BLE001 - a header, a network or a planner failure: the row says why
        log.info("fit check of %s failed: %s", ref.filename, error)
        return FileFit(ref.repo_id or "", ref.filename, ref.quant, ref.size, None, str(error), found)
    if counted is not None and counted.note:
        plan = replace(plan, explanation=f"{plan.explanation} {counted.note}")
    return FileFit(ref.repo_id or "", ref.filename, ref.quant, ref.size, plan, None, found, info, choice, counted)


def resolve_projector(ref: ProjectorRef, cache: HeaderCache | None = None) -> ProjectorCount:
    """The projector's figures, from its header wherever it lies; a projector that cannot be read does not stop
    the model's check (it chats without one), the count says what is missing instead."""
    if ref.info is not None:
        return ProjectorCount(ref.info)
    try:
        return ProjectorCount(_read_projector(ref, cache))
    except (ProjectorError, GGUFError, hub.HubError, OSError, ValueError) as error:
        log.info("projector %s not read: %s", ref.filename, error)
        return _without_header(ref, str(error))


def _read_projector(ref: ProjectorRef, cache: HeaderCache | None) -> ProjectorInfo:
    if ref.local_path is not None:
        return read_projector_info(ref.local_path)
    if ref.repo_id is None:
        raise ProjectorError(f"{ref.filename} is neither on this computer nor on the hub.")
    cache = cache or HeaderCache()
    return cache.projector_info(cache.get(ref.repo_id, ref.filename, ref.revision, sha256=ref.sha256))


def _without_header(ref: ProjectorRef, why: str) -> ProjectorCount:
    why = why.rstrip(".")
    if ref.local_path is None and ref.size:
        return ProjectorCount(listed_projector_info(ref.filename, ref.size),
                              f"Its projector {ref.filename} counts only by its listed size "
                              f"({format_bytes(ref.size)}); {IMAGE_BUFFER_NOT_COUNTED}: its header could not be "
                              f"read ({why}).")
    return ProjectorCount(None, f"Its projector {ref.filename} is not counted: its header could not be read "
                                f"({why}).")


def check_files(refs: Iterable[FileRef], conditions: FitConditions, cache: HeaderCache | None = None,
                workers: int = CHECK_WORKERS) -> list[FileFit]:
    """check_file for each file, in parallel (header reads wait on the network), in the order given."""
    cache = cache or HeaderCache()
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="fit-check") as pool:
        return list(pool.map(lambda ref: check_file(ref, conditions, cache), refs))


def exact_figures(ref: FileRef, plan: Plan, cache: HeaderCache | None = None, entries: Sequence[HeaderEntry] = (),
                  rpc_endpoints: tuple[str, ...] = ()) -> dry_run.DryRunResult:
    """llama.cpp's own dry run of the planned load: on the local file, or on header-only sparse stubs of a hub file
    (exact figures before downloading)."""
    settings = MemorySettings(n_gpu_layers=plan.n_gpu_layers, n_ctx=plan.context, kv_type=plan.kv_type,
                              flash_attn=plan.flash_attn, cpu_expert_layers=plan.cpu_expert_layers)
    if not ref.is_remote:
        info, _ = model_info(ref, cache, entries)
        return dry_run.dry_run(ref.local_path, settings, model=info, rpc_endpoints=rpc_endpoints)
    cache = cache or HeaderCache()
    entries = tuple(entries) or remote_entries(ref, cache)  # the stub needs the real header, plan inputs or not
    info, entries = model_info(ref, cache, entries)
    first = entries[0]
    folder = locations.cache_dir() / "stubs" / first.header_path.parent.relative_to(cache.root)
    for entry in entries:  # llama.cpp finds later parts by name beside the first
        stub = folder / entry.filename
        if not stub.is_file() or stub.stat().st_size != entry.file_size:
            write_sparse_stub(entry, stub)
    return dry_run.dry_run(folder / first.filename, settings, model=info, rpc_endpoints=rpc_endpoints)
