"""The Hugging Face hub, as LlamaDesk sees it: search GGUF repositories and list a repository's GGUF files.

All traffic goes through huggingface_hub (its URL building, session, token and HF_ENDPOINT handling). The user's
existing Hugging Face login (``hf auth login`` or HF_TOKEN) is used for gated and private repositories.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

import httpx2
from huggingface_hub import HfApi, constants
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from core.models import safe_names
from core.models.safe_names import UnsafeName
from core.models.projectors import is_projector_name, pick_projector

log = logging.getLogger(__name__)

SORTS = {"downloads": "downloads", "likes": "likes", "recent": "last_modified"}
_SPLIT = re.compile(r"^(?P<base>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
_QUANT = re.compile(
    r"(?:^|[-_.])((?:UD-)?(?:I?Q\d(?:_[A-Z0-9]+)*|F16|BF16|F32|MXFP4)(?:_XL|_L|_M|_S|_XS|_XXS)?)(?=[-_.]|$)",
    re.IGNORECASE)


# -- errors ---------------------------------------------------------------------------------------------------------
class HubError(Exception):
    """The hub could not answer; the message is a sentence a user can read."""


class HubAccessDenied(HubError):
    """A gated or private repository the current Hugging Face login cannot open."""


class HubNotFound(HubError):
    """No such repository, revision or file."""


class HubUnreachable(HubError):
    """No network, offline mode, or the hub did not answer."""


# A name from the hub that would escape its folder (``../``, absolute paths ...): the rules and the error live in
# core/models/safe_names.py; these names stay for the callers that import them from here.
UnsafeFileName = UnsafeName
check_safe_filename = safe_names.check_file_name


def explain_hub_error(error: Exception, what: str) -> HubError:
    """Turn a huggingface_hub / network exception about ``what`` (a repo or file) into one of our errors."""
    if isinstance(error, HubError):
        return error
    if isinstance(error, GatedRepoError):
        return HubAccessDenied(
            f"{what} is gated: accept its terms on the Hugging Face website, then log in here with "
            "`hf auth login` (or set HF_TOKEN).")
    if isinstance(error, RepositoryNotFoundError):
        status = error.response.status_code if error.response is not None else None
        if status == 401 and not _logged_in():
            return HubAccessDenied(f"{what} was not found, or it is private and you are not logged in to Hugging "
                                   "Face: log in with `hf auth login` if you should have access.")
        return HubNotFound(f"{what} does not exist on the hub, or your Hugging Face login has no access to it.")
    if isinstance(error, (RevisionNotFoundError, RemoteEntryNotFoundError)):
        return HubNotFound(f"{what} was not found on the hub.")
    if isinstance(error, OfflineModeIsEnabled):
        return HubUnreachable(f"{network_sentence(error)} — {what} needs Hugging Face.")
    if isinstance(error, HfHubHTTPError):
        status = error.response.status_code if error.response is not None else "?"
        if status in (401, 403):
            return HubAccessDenied(f"The hub refused access to {what} (HTTP {status}); check your Hugging Face login.")
        return HubError(f"The hub answered HTTP {status} for {what}.")
    if isinstance(error, httpx2.TooManyRedirects):
        return HubError(f"The hub kept redirecting the request for {what} without reaching it (a redirect loop, or "
                        "too many redirects).")
    if isinstance(error, (httpx2.TransportError, OSError)):
        log.info("the hub could not be reached for %s: %r", what, error)
        return HubUnreachable(f"{network_sentence(error)} — {what} needs Hugging Face.")
    return HubError(f"Unexpected problem with the hub for {what}: {error}")


OFFLINE = "You are offline"


def network_sentence(error: BaseException) -> str:
    """What stopped a request on its way to the hub, as a user reads it (never errno text): offline, a proxy that
    refused, a certificate that could not be checked, or a hub that did not answer in time."""
    if isinstance(error, OfflineModeIsEnabled):
        return f"{OFFLINE} (offline mode is on: HF_HUB_OFFLINE)"
    text = " ".join(str(e) for e in _causes(error)).lower()
    if isinstance(error, httpx2.ProxyError) or "proxy" in text:
        return ("The proxy did not let the request through to Hugging Face (check https_proxy / no_proxy, or the "
                "proxy's login)")
    if "certificate" in text or "ssl" in text or "tls" in text:
        return ("The connection to Hugging Face could not be verified (a network with its own certificate authority "
                "needs SSL_CERT_FILE pointing at that authority's certificate)")
    if isinstance(error, httpx2.TimeoutException) or "timed out" in text:
        return "Hugging Face did not answer in time (a slow or blocked network)"
    return OFFLINE


def _causes(error: BaseException) -> list[BaseException]:
    """The error and what it wraps (httpx keeps the socket's error as the cause)."""
    chain, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


def _logged_in() -> bool:
    from huggingface_hub import get_token

    try:
        return get_token() is not None
    except Exception:  # a broken OIDC set-up must not hide the real message
        return False


# -- where the hub is -----------------------------------------------------------------------------------------------
def endpoint() -> str:
    """The hub's base URL: HF_ENDPOINT (read now, not at import) or huggingface_hub's default."""
    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def hf_cache_dir() -> Path:
    """The standard Hugging Face cache (shared with other tools): HF_HUB_CACHE, HF_HOME/hub, or the default."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path(constants.HF_HUB_CACHE)


def is_offline() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return constants.is_offline_mode() or value in {"1", "ON", "YES", "TRUE"}


def api() -> HfApi:
    return HfApi(endpoint=endpoint())


# -- values ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RepoSummary:
    """One search hit."""

    repo_id: str
    downloads: int
    likes: int
    last_modified: datetime | None
    gated: bool


@dataclass(frozen=True)
class RemoteFile:
    """One file in a hub repository; ``sha256`` and ``size`` come from the hub's LFS metadata."""

    repo_id: str
    filename: str
    size: int | None
    sha256: str | None
    revision: str


@dataclass(frozen=True)
class RemoteModel:
    """One loadable model in a repository: a single .gguf, or the parts of a split model in order."""

    repo_id: str
    name: str
    quant: str | None
    parts: tuple[RemoteFile, ...]
    complete: bool = True

    @property
    def first_file(self) -> RemoteFile:
        return self.parts[0]

    @property
    def size(self) -> int | None:
        sizes = [p.size for p in self.parts]
        return None if None in sizes else sum(sizes)  # type: ignore[arg-type]

    @property
    def is_split(self) -> bool:
        return len(self.parts) > 1

    @property
    def is_projector(self) -> bool:
        """A vision projector (mmproj), not a chat model on its own."""
        return is_projector_name(self.name)


@dataclass(frozen=True)
class RepoListing:
    repo_id: str
    commit: str
    gated: bool
    models: tuple[RemoteModel, ...]
    rejected: tuple[str, ...] = ()  # file names refused as unsafe

    def projector_for(self, model: RemoteModel) -> RemoteModel | None:
        """The projector that lets this model see images (see core.models.projectors), None for a text-only one."""
        projectors = {candidate.name: candidate for candidate in self.models if candidate.is_projector}
        picked = pick_projector(model.name, projectors)
        return projectors[picked] if picked is not None else None


# -- file names -----------------------------------------------------------------------------------------------------
def quant_of(filename: str) -> str | None:
    """The quantisation named in a GGUF file name (``Qwen3-8B-Q4_K_M.gguf`` -> ``Q4_K_M``), if any."""
    stem = _SPLIT.sub(r"\g<base>", PurePosixPath(filename).name)
    stem = re.sub(r"\.gguf$", "", stem, flags=re.IGNORECASE)
    found = _QUANT.findall(stem)
    return found[-1].upper() if found else None


def group_models(repo_id: str, files: list[RemoteFile]) -> tuple[RemoteModel, ...]:
    """Group .gguf files into models: ``X-00001-of-00003.gguf`` ... become one model named ``X``."""
    singles: list[RemoteModel] = []
    splits: dict[tuple[str, int], dict[int, RemoteFile]] = {}
    for f in files:
        match = _SPLIT.match(f.filename)
        if match:
            splits.setdefault((match["base"], int(match["count"])), {})[int(match["index"])] = f
        else:
            singles.append(RemoteModel(repo_id, f.filename, quant_of(f.filename), (f,)))
    for (base, count), parts in splits.items():
        ordered = tuple(parts[i] for i in sorted(parts))
        complete = sorted(parts) == list(range(1, count + 1))
        singles.append(RemoteModel(repo_id, f"{base}.gguf", quant_of(base + ".gguf"), ordered, complete))
    return tuple(sorted(singles, key=lambda m: m.name.lower()))


# -- queries --------------------------------------------------------------------------------------------------------
def search(text: str, *, sort: str = "downloads", limit: int = 30) -> list[RepoSummary]:
    """GGUF repositories matching ``text``; ``sort`` is downloads, likes or recent."""
    if sort not in SORTS:
        raise ValueError(f"sort must be one of {', '.join(SORTS)}")
    if is_offline():
        raise HubUnreachable("Searching the hub needs the network, and offline mode is on.")
    try:
        hits = list(api().list_models(search=text or None, filter="gguf", sort=SORTS[sort], limit=limit,
                                      expand=["downloads", "likes", "lastModified", "gated"]))
    except Exception as error:
        raise explain_hub_error(error, f"the search for {text!r}") from error
    return [RepoSummary(m.id, m.downloads or 0, m.likes or 0, m.last_modified, bool(m.gated))
            for m in hits if _safe_repo_id(m.id)]


def _safe_repo_id(repo_id: str) -> bool:
    try:
        safe_names.check_repo_id(repo_id)
    except UnsafeName as error:
        log.warning("Ignoring a search hit: %s", error)
        return False
    return True


def list_files(repo_id: str, revision: str = "main") -> RepoListing:
    """The repository's GGUF models, with sizes and SHA-256 from the hub's LFS metadata."""
    try:
        safe_names.check_repo_id(repo_id)
        safe_names.check_revision(revision)
    except UnsafeName as error:
        raise HubError(str(error)) from error
    if is_offline():
        raise HubUnreachable(f"Listing {repo_id} needs the network, and offline mode is on.")
    try:
        info = api().model_info(repo_id, revision=revision, files_metadata=True)
    except Exception as error:
        raise explain_hub_error(error, repo_id) from error
    commit = _listed_commit(info.sha, revision, repo_id)
    files, rejected = [], []
    for sibling in info.siblings or []:
        if not sibling.rfilename.lower().endswith(".gguf"):
            continue
        try:
            check_safe_filename(sibling.rfilename)
        except UnsafeFileName:
            log.warning("Ignoring unsafe file name %r in %s", sibling.rfilename, repo_id)
            rejected.append(sibling.rfilename)
            continue
        lfs = sibling.lfs
        sha = lfs.sha256 if lfs is not None and safe_names.is_sha256(lfs.sha256) else None
        size = lfs.size if lfs is not None else sibling.size
        files.append(RemoteFile(repo_id, sibling.rfilename, size, sha, commit))
    return RepoListing(repo_id, commit, bool(info.gated), group_models(repo_id, files), tuple(rejected))


def _listed_commit(sha: str | None, revision: str, repo_id: str) -> str:
    """The commit the hub resolved ``revision`` to; callers use it as a folder name, so it must be a commit hash."""
    if sha is None:
        return revision
    try:
        return safe_names.check_commit(sha, where=repo_id)
    except UnsafeName as error:
        raise HubError(str(error)) from error


def find_file(listing: RepoListing, filename: str) -> RemoteFile | None:
    for model in listing.models:
        for part in model.parts:
            if part.filename == filename:
                return part
    return None
