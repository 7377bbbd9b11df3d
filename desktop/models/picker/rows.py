"""What one line of a file table shows: a model file from the catalog, a hub repository or this computer.

Rows are values: a fit check or a finished download makes a new row (dataclasses.replace), never a change in place.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from core.fit.projector import ProjectorInfo
from core.models.catalog import Catalog, CatalogProjector
from core.models.fit_check import FileFit, FileRef, ProjectorRef
from core.models.hub import RemoteModel, RepoListing
from core.models.library import LocalModel
from core.models.plan_inputs import PlanInputs
from core.models.projectors import is_projector_name

CATALOG, SEARCH, LOCAL = "catalog", "search", "local"


@dataclass(frozen=True)
class ProjectorFile:
    """A vision model's paired projector (core.models.projectors): on the hub (its parts, verified like any file) or
    on this computer (its path); a catalog's carries its figures (``info``), precomputed from its header."""

    filename: str
    parts: tuple[str, ...] = ()
    sha256s: tuple[str | None, ...] = ()
    sizes: tuple[int | None, ...] = ()
    path: Path | None = None
    info: ProjectorInfo | None = field(default=None, compare=False)

    @property
    def size(self) -> int | None:
        return None if not self.sizes or None in self.sizes else sum(self.sizes)  # type: ignore[arg-type]

    def ref(self, repo_id: str | None, revision: str) -> ProjectorRef:
        """The projector as the fit check resolves it: by its path here, else by its header on the hub."""
        if self.path is not None:
            return ProjectorRef(self.filename, local_path=self.path, size=self.size, info=self.info)
        sha256 = self.sha256s[0] if len(self.sha256s) == 1 else None
        return ProjectorRef(self.filename, repo_id, revision, sha256, self.size, info=self.info)


@dataclass(frozen=True)
class PickerRow:
    key: str                              # unique within the picker: "catalog:repo/file", "local:/path" ...
    origin: str                           # CATALOG | SEARCH | LOCAL
    title: str                            # the model's name (catalog) or the file's name
    filename: str                         # the file (a split model: its first part)
    quant: str | None
    size: int | None
    repo_id: str | None = None
    revision: str = "main"
    parts: tuple[str, ...] = ()           # file names of every part (remote rows)
    sha256s: tuple[str | None, ...] = ()  # per part, from the hub's LFS metadata when known
    sizes: tuple[int | None, ...] = ()    # per part
    local: LocalModel | None = None       # set when the file is on this computer (and complete)
    fit: FileFit | None = None            # set once the fit check is done
    plan_inputs: PlanInputs | None = field(default=None, compare=False)  # a catalog file's: planned offline
    projector: ProjectorFile | None = None  # set for a vision model: it downloads and loads with it

    @property
    def sees_images(self) -> bool:
        return self.projector is not None

    @property
    def is_projector(self) -> bool:
        """An mmproj file: it belongs to a model's row, never a row of its own."""
        return is_projector_name(self.filename)

    @property
    def downloads(self) -> list[tuple[str, str | None, int | None]]:
        """(file, sha256, size) of every part to fetch: the model's, then its projector's."""
        files = list(zip(self.parts, self.sha256s or (None,) * len(self.parts), self.sizes or (None,) * len(self.parts)))
        if self.projector is not None and self.projector.parts:
            projector = self.projector
            files += zip(projector.parts, projector.sha256s or (None,) * len(projector.parts),
                         projector.sizes or (None,) * len(projector.parts))
        return files

    @property
    def is_remote(self) -> bool:
        return self.repo_id is not None and self.origin != LOCAL

    @property
    def on_disk(self) -> bool:
        return self.local is not None and self.local.usable

    @property
    def load_path(self) -> Path | None:
        return self.local.path if self.on_disk else None

    @property
    def ref(self) -> FileRef:
        """The file as core's fit check takes it: a hub file is planned from its header even when a copy is on disk
        (the same verdict as before the download); a local row from the header the library read."""
        projector = self.projector.ref(self.repo_id, self.revision) if self.projector is not None else None
        if self.is_remote:
            return FileRef(self.filename, self.repo_id, self.revision, self.parts, self.sha256s, self.quant, self.size,
                           plan_inputs=self.plan_inputs, projector=projector)
        local = self.local
        return FileRef(self.filename, self.repo_id, quant=self.quant, size=self.size,
                       local_path=local.path if local is not None else None,
                       local_info=local.info if local is not None else None,
                       local_error=(local.error or None) if local is not None else "This file has not been read yet.",
                       projector=projector)

    @property
    def planned_offline(self) -> bool:
        """A catalog row whose model and projector figures ship with the catalog: no header to read."""
        return (self.is_remote and self.plan_inputs is not None
                and (self.projector is None or self.projector.info is not None))


def rows_from_catalog(catalog: Catalog) -> list[PickerRow]:
    rows = []
    for model, f in catalog.files():
        parts = f.all_parts
        rows.append(PickerRow(f"{CATALOG}:{model.repo_id}/{f.filename}", CATALOG, model.name, f.filename, f.quant,
                              f.size, model.repo_id, model.revision, parts,
                              (f.sha256,) if len(parts) == 1 else (None,) * len(parts),
                              (f.size,) if len(parts) == 1 else (None,) * len(parts), plan_inputs=f.plan_inputs,
                              projector=_catalog_projector(model.projector)))
    return rows


def _catalog_projector(projector: CatalogProjector | None) -> ProjectorFile | None:
    if projector is None:
        return None
    return ProjectorFile(projector.filename, (projector.filename,), (projector.sha256,), (projector.size,),
                         info=projector.info)


def rows_from_listing(listing: RepoListing) -> list[PickerRow]:
    """A row per complete model of the repository; its projectors are no rows of their own but go with the models
    they pair with."""
    return [PickerRow(f"{SEARCH}:{listing.repo_id}/{m.first_file.filename}", SEARCH, m.name,
                      m.first_file.filename, m.quant, m.size, listing.repo_id, listing.commit,
                      tuple(p.filename for p in m.parts), tuple(p.sha256 for p in m.parts),
                      tuple(p.size for p in m.parts), projector=_remote_projector(listing.projector_for(m)))
            for m in listing.models if m.complete and not m.is_projector]


def _remote_projector(model: RemoteModel | None) -> ProjectorFile | None:
    if model is None or not model.complete:
        return None
    return ProjectorFile(model.first_file.filename, tuple(p.filename for p in model.parts),
                         tuple(p.sha256 for p in model.parts), tuple(p.size for p in model.parts))


def row_from_local(model: LocalModel) -> PickerRow:
    quant = model.info.quantization if model.info is not None else None
    projector = ProjectorFile(model.projector.name, path=model.projector) if model.projector is not None else None
    return PickerRow(f"{LOCAL}:{model.path}", LOCAL, model.name, model.path.name, quant, model.size,
                     model.repo_id, local=model, projector=projector)


def with_local_copies(rows: list[PickerRow], library: list[LocalModel]) -> list[PickerRow]:
    """Each remote row with the library's copy of its file, when this computer has one."""
    return [replace(row, local=find_local_copy(row, library)) for row in rows]


def find_local_copy(row: PickerRow, library: list[LocalModel]) -> LocalModel | None:
    if not row.is_remote:
        return row.local
    wanted = row.filename
    for model in library:
        if model.repo_id == row.repo_id and model.path.as_posix().endswith("/" + wanted) and model.usable:
            return model
    return None
