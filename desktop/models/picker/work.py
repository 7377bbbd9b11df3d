"""The picker's work off the UI thread: each function here runs inside a desktop.tasks.Task, never on the UI
thread. They only call core (catalog, hub, headers, library, planner, dry run) and hand back values.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path

from core import catalog, dryrun, hub, library
from core.catalog import FileFit
from core.gguf import ModelInfo
from core.hardware import HardwareSnapshot
from core.headers import HeaderCache, HeaderEntry, combine_split
from core.memory import MemorySettings
from core.offload_choice import OffloadChoice, plan_choice
from core.plan import Plan
from desktop.models.picker.rows import PickerRow

FIT_WORKERS = 4


@dataclass(frozen=True)
class Planning:
    """What the fit check of one list needs: the machine, the user's choice and where headers are cached."""

    hardware: HardwareSnapshot
    choice: OffloadChoice
    margin_bytes: int
    cache: HeaderCache


@dataclass(frozen=True)
class RowPlan:
    """The plan of one row for the details pane, with the model it planned."""

    key: str
    info: ModelInfo
    plan: Plan
    choice: OffloadChoice


# -- fit check of a list, one result at a time -----------------------------------------------------------------------
def fit_rows(rows: list[PickerRow], planning: Planning, stop: threading.Event,
             workers: int = FIT_WORKERS) -> Iterator[tuple[str, FileFit]]:
    """Yield (row key, FileFit) as each row's check finishes, so the list fills in progressively."""
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="fit")
    try:
        pending = {pool.submit(fit_row, row, planning): row.key for row in rows}
        while pending and not stop.is_set():
            done, _ = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            for future in done:
                yield pending.pop(future), future.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def fit_row(row: PickerRow, planning: Planning) -> FileFit:
    """One row's fit, planned as a load would plan it. Errors stay on the row (one bad file must not stop a list)."""
    entries: tuple[HeaderEntry, ...] = ()
    try:
        if row.is_remote:
            entries = remote_entries(row, planning.cache)
            info = combined_info(entries, planning.cache)
        else:
            info = _local_info(row)
        plan = plan_choice(info, planning.hardware, _capped(planning.choice, info), planning.margin_bytes)
    except Exception as error:  # noqa: BLE001 - the row shows the sentence
        return FileFit(row.repo_id or "", row.filename, row.quant, row.size, None, str(error), entries)
    return FileFit(row.repo_id or "", row.filename, row.quant, row.size, plan, None, entries)


def remote_entries(row: PickerRow, cache: HeaderCache) -> tuple[HeaderEntry, ...]:
    """The cached (or now fetched, by HTTP range reads) headers of every part of a remote file."""
    hashes = row.sha256s or (None,) * len(row.parts)
    return tuple(cache.get(row.repo_id or "", part, row.revision, sha256=sha)
                 for part, sha in zip(row.parts or (row.filename,), hashes))


def combined_info(entries: tuple[HeaderEntry, ...], cache: HeaderCache) -> ModelInfo:
    first, *later = entries
    return combine_split(cache.model_info(first), [e.part_tensors() for e in later], [e.file_size for e in later])


# -- one row, for the details pane -----------------------------------------------------------------------------------
def plan_row(row: PickerRow, planning: Planning) -> RowPlan:
    """The plan for the details pane's context and KV choice (the same planning a load does)."""
    info = row_info(row, planning.cache)
    choice = _capped(planning.choice, info)
    return RowPlan(row.key, info, plan_choice(info, planning.hardware, choice, planning.margin_bytes), choice)


def row_info(row: PickerRow, cache: HeaderCache) -> ModelInfo:
    if not row.is_remote:
        return _local_info(row)
    entries = row.fit.entries if row.fit is not None and row.fit.entries else remote_entries(row, cache)
    return combined_info(entries, cache)


def exact_figures(row: PickerRow, plan: Plan, cache: HeaderCache) -> dryrun.DryRunResult:
    """llama.cpp's own dry run for the planned load: on the header stub of a remote file, or on the local file."""
    settings = MemorySettings(n_gpu_layers=plan.n_gpu_layers, n_ctx=plan.context, kv_type=plan.kv_type,
                              flash_attn=plan.flash_attn)
    if row.is_remote:
        entries = row.fit.entries if row.fit is not None and row.fit.entries else remote_entries(row, cache)
        return catalog.exact_figures(entries, settings, cache=cache)
    return dryrun.dry_run(row.local.path, settings, model=_local_info(row))  # type: ignore[union-attr]


def _local_info(row: PickerRow) -> ModelInfo:
    if row.local is None or row.local.info is None:
        raise ValueError(row.local.error if row.local is not None and row.local.error else
                         f"{row.filename} has not been read yet.")
    return row.local.info


def _capped(choice: OffloadChoice, info: ModelInfo) -> OffloadChoice:
    """As a load does (core.offload.prepare_load): never more context than the model was trained for."""
    if info.context_length and choice.context > info.context_length:
        return replace(choice, context=info.context_length)
    return choice


# -- lists ----------------------------------------------------------------------------------------------------------
def load_catalog(path: Path | None = None) -> catalog.Catalog:
    return catalog.load_catalog(path)


def refresh_catalog(current: catalog.Catalog) -> catalog.Catalog:
    return catalog.refresh(current)


def search_hub(text: str, sort: str) -> list[hub.RepoSummary]:
    return hub.search(text, sort=sort)


def list_repo(repo_id: str) -> hub.RepoListing:
    return hub.list_files(repo_id)


def scan_library(sources: library.LibrarySources) -> list[library.LocalModel]:
    return library.scan(sources)


def delete_model(model: library.LocalModel, sources: library.LibrarySources) -> list:
    return library.delete(model, sources)
