"""Names that arrive from a server (or from a file another program wrote) and become parts of paths here.

A hub answers with a commit hash, a file's SHA-256, file names, repository ids; Ollama's manifests name blobs by
digest. Each of them ends up in a path on this computer (``snapshots/<commit>/<file>``, ``blobs/<sha256>``,
``headers/<repo>/<revision>/<file>``), so each is checked here, by one set of rules, before it is used; and a
path built from them is checked to be inside its root once resolved (a symlink or a ``..`` cannot lead out).

    commit = check_commit(meta.commit_hash, where="evil/model/m.gguf")
    pointer = inside(repo_dir, repo_dir / "snapshots" / commit / check_file_name(name))
"""
from __future__ import annotations

import os
import re
from pathlib import Path

COMMIT = re.compile(r"[0-9a-f]{40}")
SHA256 = re.compile(r"[0-9a-f]{64}")
OLLAMA_DIGEST = re.compile(r"sha256[:-](?P<hex>[0-9a-f]{64})")
_REPO_PART = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_REPO_ID = 96          # the hub's own limit on a repository id
MAX_NAME = 1024


class UnsafeName(ValueError):
    """A name that cannot safely become part of a path; the message says which name and what is wrong with it."""


def is_commit(value: object) -> bool:
    return isinstance(value, str) and COMMIT.fullmatch(value) is not None


def is_sha256(value: object) -> bool:
    return isinstance(value, str) and SHA256.fullmatch(value) is not None


def check_commit(value: object, *, where: str) -> str:
    """A commit hash: exactly 40 lowercase hexadecimal digits."""
    if not is_commit(value):
        raise UnsafeName(f"The hub named the commit {_shown(value)} for {where}, which is not a commit hash "
                         "(40 hexadecimal digits); nothing was written.")
    return value  # type: ignore[return-value]


def check_sha256(value: object, *, where: str) -> str:
    """A SHA-256: exactly 64 lowercase hexadecimal digits."""
    if not is_sha256(value):
        raise UnsafeName(f"The hub gave {_shown(value)} as the SHA-256 of {where}, which is not a SHA-256 "
                         "(64 hexadecimal digits); nothing was written.")
    return value  # type: ignore[return-value]


def check_file_name(name: object, *, what: str = "file name") -> str:
    """A relative path inside a repository (``sub/model.gguf``): no ``..`` or ``.`` part, no empty part, nothing
    absolute (``/x``, ``C:x``), no backslash, NUL or other control character."""
    problem = _relative_path_problem(name)
    if problem:
        raise UnsafeName(f"Refusing the {what} {_shown(name)}: {problem}, so it would point outside the model "
                         "folder.")
    return name  # type: ignore[return-value]


def check_revision(revision: object) -> str:
    """A branch, tag or commit (``main``, ``v1.0``, ``refs/pr/1``): the same rules as a file name."""
    return check_file_name(revision, what="revision")


def check_repo_id(repo_id: object) -> str:
    """``owner/name`` (or a bare ``name``): letters, digits, ``-``, ``_``, ``.``; no ``--`` or ``..``."""
    parts = repo_id.split("/") if isinstance(repo_id, str) else []
    valid = (0 < len(parts) <= 2 and len(repo_id) <= MAX_REPO_ID  # type: ignore[arg-type]
             and all(_REPO_PART.fullmatch(part) for part in parts)
             and "--" not in repo_id and ".." not in repo_id)  # type: ignore[operator]
    if not valid:
        raise UnsafeName(f"Refusing the repository id {_shown(repo_id)}: a repository is named owner/name with "
                         "letters, digits, '-', '_' and '.' only (no '--' or '..').")
    return repo_id  # type: ignore[return-value]


def check_ollama_digest(digest: object, *, where: str) -> str:
    """An Ollama layer digest (``sha256:<64 hex>``, or ``sha256-<64 hex>`` as its blob files are named);
    returns the blob file name, ``sha256-<64 hex>``."""
    match = OLLAMA_DIGEST.fullmatch(digest) if isinstance(digest, str) else None
    if match is None:
        raise UnsafeName(f"{where} names the blob {_shown(digest)}, which is not a sha256:<64 hexadecimal digits> "
                         "digest.")
    return f"sha256-{match['hex']}"


def inside(root: Path, path: Path) -> Path:
    """``path`` if, with symlinks and ``..`` resolved, it is ``root`` or below it; else UnsafeName."""
    real_root = Path(os.path.realpath(root))
    real = Path(os.path.realpath(path))
    if real != real_root and real_root not in real.parents:
        raise UnsafeName(f"Refusing to write {path}: it resolves to {real}, outside {real_root}.")
    return path


def _relative_path_problem(name: object) -> str | None:
    if not isinstance(name, str) or not name:
        return "it is empty"
    if len(name) > MAX_NAME:
        return f"it is longer than {MAX_NAME} characters"
    if "\x00" in name or _CONTROL.search(name):
        return "it contains a NUL or control character"
    if "\\" in name:
        return "it contains a backslash"
    if name.startswith("/") or _DRIVE.match(name):
        return "it is an absolute path"
    parts = name.split("/")
    if ".." in parts:
        return "it contains '..'"
    if any(part in ("", ".") for part in parts):
        return "it has an empty or '.' part"
    return None


def _shown(value: object) -> str:
    """A server's value as a message shows it: quoted, escaped, and cut short when long."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
