"""`llamadesk-cli search | files | download | models`: find, fit-check, fetch and list models."""
from __future__ import annotations

import argparse
import json
import sys
import time

from core.models import hub
from core.cli import fit_options
from core.cli.errors import fail
from core.platform.units import format_bytes


def register(subparsers) -> None:
    search = subparsers.add_parser("search", help="search Hugging Face for GGUF models")
    search.add_argument("text", help="words to look for")
    search.add_argument("--sort", choices=sorted(hub.SORTS), default="downloads")
    search.add_argument("--limit", type=int, default=20)
    search.set_defaults(handler=run_search)

    files = subparsers.add_parser("files", help="a repository's GGUF files with fit badges for this machine")
    files.add_argument("repo", help="owner/name on Hugging Face")
    files.add_argument("--revision", default="main")
    fit_options.add_arguments(files)
    files.add_argument("--no-fit", action="store_true", help="list only, do not read headers")
    files.add_argument("--json", action="store_true", help="print one JSON object")
    files.set_defaults(handler=run_files)

    download = subparsers.add_parser("download", help="download a GGUF file into the Hugging Face cache")
    download.add_argument("repo", help="owner/name on Hugging Face")
    download.add_argument("file", help="file name in the repository (a split model: its name or first part)")
    download.add_argument("--revision", default="main")
    download.set_defaults(handler=run_download)

    models = subparsers.add_parser("models", help="the models already on this computer")
    models.add_argument("--folder", action="append", default=[], help="also look in this folder (repeatable)")
    fit_options.add_arguments(models)
    models.add_argument("--no-fit", action="store_true", help="list only, without fit badges")
    models.add_argument("--json", action="store_true", help="print one JSON object")
    models.set_defaults(handler=run_models)


# -- search ---------------------------------------------------------------------------------------------------------
def run_search(args: argparse.Namespace) -> int:
    try:
        hits = hub.search(args.text, sort=args.sort, limit=args.limit)
    except hub.HubError as error:
        return fail(str(error))
    if not hits:
        print(f"No GGUF repositories match {args.text!r}.")
        return 0
    width = max(len(h.repo_id) for h in hits)
    print(f"{'REPOSITORY':<{width}}  {'DOWNLOADS':>10}  {'LIKES':>6}  UPDATED     ACCESS")
    for h in hits:
        updated = h.last_modified.date().isoformat() if h.last_modified else "—"
        print(f"{h.repo_id:<{width}}  {h.downloads:>10}  {h.likes:>6}  {updated:<10}  {'gated' if h.gated else ''}")
    return 0


# -- files ----------------------------------------------------------------------------------------------------------
def run_files(args: argparse.Namespace) -> int:
    try:
        listing = hub.list_files(args.repo, args.revision)
    except hub.HubError as error:
        return fail(str(error))
    fits = {} if args.no_fit else _fits(listing, args)
    if isinstance(fits, int):
        return fits
    if args.json:
        print(json.dumps(_files_json(listing, fits), indent=2))
        return 0
    print(f"{listing.repo_id} @ {listing.commit[:12]}{' (gated)' if listing.gated else ''}")
    if not listing.models:
        print("No GGUF files in this repository.")
    width = max([len(m.name) for m in listing.models] + [4])
    print(f"{'FILE':<{width}}  {'QUANT':<10}  {'SIZE':>10}  {'TOK/S':>6}  FIT")
    for model in listing.models:
        fit = fits.get(model.name)
        speed = f"{fit.tokens_per_second:6.1f}" if fit is not None and fit.tokens_per_second else "     —"
        badge = "" if fit is None else fit.badge if fit.plan is not None else f"Unknown ({fit.error})"
        notes = " [split %d parts]" % len(model.parts) if model.is_split else ""
        notes += " [projector]" if model.is_projector else ""
        notes += " [vision]" if fit is not None and fit.projector is not None else ""
        print(f"{model.name:<{width}}  {model.quant or '—':<10}  {format_bytes(model.size):>10}  {speed}  "
              f"{badge}{notes}")
        if fit is not None and fit.projector is not None and fit.projector.note:
            print(f"{'':<{width}}  ! {fit.projector.note}")
    for name in listing.rejected:
        print(f"(ignored unsafe file name {name!r})")
    return 0


def _fits(listing: hub.RepoListing, args: argparse.Namespace):
    from core.machine import hardware
    from core.models import fit_check

    try:
        conditions = fit_options.conditions(args)
    except hardware.HardwareError as error:
        return fail(str(error))
    refs = [fit_check.FileRef(m.name, listing.repo_id, listing.commit, tuple(p.filename for p in m.parts),
                              tuple(p.sha256 for p in m.parts), m.quant, m.size,
                              projector=_hub_projector(listing, m))
            for m in listing.models if not m.is_projector]
    return {fit.filename: fit for fit in fit_check.check_files(refs, conditions)}


def _hub_projector(listing: hub.RepoListing, model: hub.RemoteModel):
    """The projector the model pairs with in its repository, counted in its fit as the picker counts it."""
    from core.models.fit_check import ProjectorRef

    projector = listing.projector_for(model)
    if projector is None or not projector.complete:
        return None
    return ProjectorRef(projector.name, listing.repo_id, listing.commit, projector.first_file.sha256, projector.size)


def _files_json(listing: hub.RepoListing, fits: dict) -> dict:
    rows = []
    for model in listing.models:
        fit = fits.get(model.name)
        rows.append({"name": model.name, "quant": model.quant, "size": model.size,
                     "parts": [{"file": p.filename, "size": p.size, "sha256": p.sha256} for p in model.parts],
                     "verdict": fit.plan.verdict if fit and fit.plan else None,
                     "n_gpu_layers": fit.plan.n_gpu_layers if fit and fit.plan else None,
                     "context": fit.plan.context if fit and fit.plan else None,
                     "predicted_tokens_per_second": fit.tokens_per_second if fit else None,
                     "projector": fit.projector.to_json() if fit and fit.projector else None,
                     "error": fit.error if fit else None})
    return {"repo": listing.repo_id, "commit": listing.commit, "gated": listing.gated, "files": rows}


# -- download -------------------------------------------------------------------------------------------------------
def run_download(args: argparse.Namespace) -> int:
    from core.models.downloads.manager import DownloadError, download

    try:
        parts = _parts_to_fetch(args.repo, args.file, args.revision)
        paths = [download(request, on_progress=_ProgressLine()) for request in parts]
    except (DownloadError, hub.HubError) as error:
        return fail(str(error))
    except KeyboardInterrupt:
        return fail("interrupted; run the same command again to resume from the bytes already downloaded.")
    for path in paths[1:]:
        print(path)
    print(paths[0])  # last line: the file to load (a split model's first part)
    return 0


def _parts_to_fetch(repo_id: str, filename: str, revision: str):
    """One request, or one per part when ``filename`` names a split model (or one of its parts)."""
    from core.models.downloads.manager import DownloadRequest, UnsafeFileName

    try:
        hub.check_safe_filename(filename)
    except hub.UnsafeFileName as error:
        raise UnsafeFileName(str(error)) from error
    try:
        listing = hub.list_files(repo_id, revision)
    except hub.HubError:
        return [DownloadRequest(repo_id, filename, revision)]  # the download itself explains the problem
    for model in listing.models:
        if filename == model.name or filename in {p.filename for p in model.parts}:
            return [DownloadRequest(repo_id, p.filename, revision, p.sha256, p.size) for p in model.parts]
    return [DownloadRequest(repo_id, filename, revision)]


class _ProgressLine:
    """Progress on stderr: one updating line on a terminal, a line every few seconds otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = 0.0
        self.state = None

    def __call__(self, progress) -> None:
        now = time.monotonic()
        changed = progress.state != self.state
        if not changed and now - self.last < (0.2 if self.tty else 5.0):
            return
        self.last, self.state = now, progress.state
        total = format_bytes(progress.total_bytes) if progress.total_bytes else "?"
        if progress.state.value == "verifying":
            done = progress.checked_bytes
            text = f"{progress.filename}: checking SHA-256 {self._percent(done, progress.total_bytes)} of {total}"
        else:
            eta = f"ETA {progress.eta_seconds:.0f} s" if progress.eta_seconds is not None else ""
            text = (f"{progress.filename}: {progress.state.value} "
                    f"{self._percent(progress.bytes_done, progress.total_bytes)} "
                    f"{format_bytes(progress.bytes_done)} of {total} at "
                    f"{format_bytes(progress.speed_bytes_per_second)}/s {eta}")
        print(("\r" + text.ljust(100)) if self.tty else text, end="" if self.tty else "\n", file=sys.stderr,
              flush=True)
        if self.tty and progress.state.finished:
            print(file=sys.stderr)

    @staticmethod
    def _percent(done: int, total: int | None) -> str:
        return f"{100 * done / total:5.1f}%" if total else "  ?  "


# -- models ---------------------------------------------------------------------------------------------------------
def run_models(args: argparse.Namespace) -> int:
    from pathlib import Path

    from core.models import library
    from core import settings

    folders = tuple(Path(f).expanduser() for f in (*_saved_folders(settings), *args.folder))
    models = library.scan(library.LibrarySources(user_dirs=folders))
    verdicts = {} if args.no_fit else _local_verdicts(models, args)
    if isinstance(verdicts, int):
        return verdicts
    if args.json:
        print(json.dumps([{"name": m.name, "source": m.source, "path": str(m.path), "size": m.size,
                           "parts": [str(p) for p in m.parts], "repo_id": m.repo_id,
                           "architecture": m.info.architecture if m.info else None,
                           "quantization": m.info.quantization if m.info else None,
                           "verdict": verdicts.get(m.path), "error": m.error} for m in models], indent=2))
        return 0
    if not models:
        print("No local GGUF models found (Hugging Face cache, LlamaDesk's folder, LM Studio, Ollama).")
        return 0
    width = max(len(m.name) for m in models)
    print(f"{'MODEL':<{width}}  {'SOURCE':<11}  {'SIZE':>10}  {'ARCH':<10}  {'QUANT':<8}  {'FIT':<32}  PATH")
    for m in models:
        arch = m.info.architecture if m.info else "unreadable"
        quant = m.info.quantization if m.info else "—"
        fit = verdicts.get(m.path) or ""
        print(f"{m.name:<{width}}  {m.source:<11}  {format_bytes(m.size):>10}  {arch:<10}  {quant:<8}  "
              f"{fit:<32}  {m.path}")
        if m.error:
            print(f"{'':<{width}}  ! {m.error}")
    return 0


def _local_verdicts(models, args: argparse.Namespace):
    """{path: verdict} for the models on this computer (a split model is planned with all its parts)."""
    from core.machine import hardware
    from core.models import fit_check

    try:
        conditions = fit_options.conditions(args)
    except hardware.HardwareError as error:
        return fail(str(error))
    verdicts = {}
    for model in models:
        projector = (fit_check.ProjectorRef(model.projector.name, local_path=model.projector)
                     if model.projector is not None else None)
        fit = fit_check.check_file(fit_check.FileRef(model.path.name, local_path=model.path, local_info=model.info,
                                                     local_error=model.error or None, projector=projector),
                                   conditions)
        if fit.plan is not None or model.info is not None:
            verdicts[model.path] = fit.badge if fit.plan is not None else f"Unknown ({fit.error})"
    return verdicts


def _saved_folders(settings_module) -> tuple[str, ...]:
    try:
        return tuple(settings_module.load().model_folders)
    except Exception:  # the library must list what it can even with broken settings
        return ()
