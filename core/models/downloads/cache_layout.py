"""Where a hub file lives in the standard Hugging Face cache, and placing a verified one there.

    models--<owner>--<name>/blobs/<sha256>                 the bytes (``<sha256>.llamadesk-part`` while arriving)
    models--<owner>--<name>/snapshots/<commit>/<file>      a link to the blob
    models--<owner>--<name>/refs/<branch>                  the commit a branch pointed at

the layout huggingface_hub and its cache scanner use, so other tools see our files and we see theirs. The hub's
answers decide the names in these paths, so each is checked (core/models/safe_names.py) and each path is checked to
stay inside the repository's folder.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from huggingface_hub.file_download import repo_folder_name

from core.models import safe_names

PART_SUFFIX = ".llamadesk-part"


class HubCacheLayout:
    """Paths in the Hugging Face cache for one repository, and placing a verified blob in it.

    Every name that goes into a path is checked first (core/models/safe_names.py) and every path is checked to
    stay inside the repository's folder: the hub's answers decide these names.
    """

    def __init__(self, cache_dir: Path, repo_id: str) -> None:
        safe_names.check_repo_id(repo_id)
        self.repo_dir = cache_dir / repo_folder_name(repo_id=repo_id, repo_type="model")
        self.label = repo_id

    def blob(self, sha256: str) -> Path:
        return self._inside(self.repo_dir / "blobs" / safe_names.check_sha256(sha256, where=self.label))

    def part(self, sha256: str) -> Path:
        name = safe_names.check_sha256(sha256, where=self.label) + PART_SUFFIX
        return self._inside(self.repo_dir / "blobs" / name)

    def pointer(self, commit: str, filename: str) -> Path:
        safe_names.check_commit(commit, where=f"{self.label}/{filename}")
        safe_names.check_file_name(filename)
        pointer = self.repo_dir / "snapshots" / commit / Path(*filename.split("/"))
        self._inside(pointer.parent)  # the pointer itself is our link to the blob: its folder is what must stay
        return pointer

    def ref(self, revision: str) -> Path:
        return self._inside(self.repo_dir / "refs" / Path(*safe_names.check_revision(revision).split("/")))

    def _inside(self, path: Path) -> Path:
        return safe_names.inside(self.repo_dir, path)

    def prepare(self) -> None:
        # huggingface_hub's scanner calls a repo folder without snapshots/ corrupted: create both up front.
        (self.repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
        (self.repo_dir / "snapshots").mkdir(parents=True, exist_ok=True)

    def place(self, part: Path, sha256: str, commit: str, filename: str, revision: str) -> Path:
        """Move a verified part file to its blob, link it from the snapshot and record the branch -> commit."""
        blob = self.blob(sha256)
        os.replace(part, blob)
        os.chmod(blob, 0o666 & ~_UMASK)
        pointer = self.link(sha256, commit, filename)
        if revision != commit:
            ref = self.ref(revision)
            ref.parent.mkdir(parents=True, exist_ok=True)
            ref.write_text(commit)
        return pointer

    def link(self, sha256: str, commit: str, filename: str) -> Path:
        blob, pointer = self.blob(sha256), self.pointer(commit, filename)
        pointer.parent.mkdir(parents=True, exist_ok=True)
        if pointer.is_symlink() or pointer.exists():
            pointer.unlink()
        try:
            os.symlink(os.path.relpath(blob, pointer.parent), pointer)
        except OSError:  # no symlinks (Windows without developer mode): a hard link, else a copy
            try:
                os.link(blob, pointer)
            except OSError:
                shutil.copyfile(blob, pointer)
        return pointer


def _read_umask() -> int:
    current = os.umask(0o022)  # read once at import, before worker threads create files
    os.umask(current)
    return current


_UMASK = _read_umask()
