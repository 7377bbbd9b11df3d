"""Remote GGUF headers: read only the header of a file on the hub by HTTP range requests, and keep it on disk.

A header is enough to plan a model (core/fit/planner.py) and, written as a sparse stub (header bytes, then truncated to
the real size), for llama.cpp's exact dry run (core/fit/dry_run.py) — all before downloading gigabytes.

The first read is small (256 KiB) and grows by what the parser says it needs (GGUFHeaderIncomplete.needed_bytes,
at least doubling). Requests go to huggingface_hub's URL for the file (HF_ENDPOINT honoured) with the headers it
builds (the user's token, its user agent), through its shared session; the hub's redirect to its CDN is followed
and the CDN never sees the token; a redirect to anything but http(s) is refused. Cached headers live under
cache_dir()/headers/<repo>/<revision>/<file>, each name checked by core/models/safe_names.py first, as are the
commit and SHA-256 the hub answers with.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx2
from huggingface_hub import hf_hub_url
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

from core.fit.projector import ProjectorInfo, read_projector_info
from core.models import hub, safe_names
from core.models.downloads.transfer import unfollowed_redirect
from core.models.projectors import is_projector_name
from core.platform import locations
from core.gguf.reader import (
    ArraySummary,
    GGUFError,
    GGUFHeaderIncomplete,
    ModelInfo,
    StringSummary,
    TensorInfo,
    parse_model_info,
)

log = logging.getLogger(__name__)

FIRST_READ_BYTES = 256 * 1024
MAX_HEADER_BYTES = 64 * 1024 * 1024
TIMEOUT = httpx2.Timeout(30.0, connect=10.0)
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_NUMBER = re.compile(r"\d{1,20}")
_SPLIT = re.compile(r"^.+-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
HEADER_NEEDED = "figures for this file need its header from Hugging Face."


class HeaderError(hub.HubError):
    """The header of a remote file could not be read or is not a GGUF header."""


class HeaderUnavailable(HeaderError):
    """Not in the header cache, and the hub cannot be reached (offline, a proxy, a certificate, a timeout)."""


@dataclass(frozen=True)
class HeaderEntry:
    """A cached remote header: the first ``header_length`` bytes of a file of ``file_size`` bytes."""

    repo_id: str
    filename: str
    revision: str          # as asked: a branch, tag or commit
    commit: str | None     # the commit the hub resolved it to
    sha256: str | None     # the file's LFS sha256 (from X-Linked-Etag)
    file_size: int
    header_path: Path
    header_length: int

    @property
    def label(self) -> str:
        return f"{self.repo_id}/{self.filename}"

    def header_bytes(self) -> bytes:
        return self.header_path.read_bytes()

    def model_info(self) -> ModelInfo:
        return parse_model_info(self.header_bytes(), file_size=self.file_size, source=self.label)

    def part_tensors(self) -> tuple[TensorInfo, ...]:
        """The tensor table of a split model's later part (which has no model description of its own)."""
        return split_part_tensors(self.header_bytes(), self.file_size, self.label)[0]


@dataclass(frozen=True)
class _Fetched:
    data: bytes
    file_size: int
    commit: str | None
    sha256: str | None


# -- fetching -------------------------------------------------------------------------------------------------------
def _read_range(url: str, start: int, end: int, label: str) -> tuple[bytes, httpx2.Response]:
    """Bytes [start, end] (inclusive) of the file at ``url``; the response keeps the redirect history."""
    headers = build_hf_headers()
    headers["Range"] = f"bytes={start}-{end}"
    headers["Accept-Encoding"] = "identity"
    try:
        response = get_session().get(url, headers=headers, timeout=TIMEOUT, follow_redirects=True)
        hf_raise_for_status(response)
    except httpx2.UnsupportedProtocol as error:
        why = unfollowed_redirect(str(error.request.url)) or str(error)
        raise HeaderError(f"Cannot read the header of {label}: {why}.") from error
    except httpx2.TooManyRedirects as error:
        raise HeaderError(f"Cannot read the header of {label}: the hub kept redirecting without reaching the file "
                          "(a redirect loop, or too many redirects).") from error
    except Exception as error:
        explained = hub.explain_hub_error(error, label)
        if isinstance(explained, hub.HubUnreachable):  # no answer at all: the sentence says what the header is for
            raise HeaderUnavailable(f"{hub.network_sentence(error)} — {HEADER_NEEDED}") from error
        raise explained from error
    if response.status_code == 200:
        return response.content[start:end + 1], response  # a server that ignores Range: take our slice
    return response.content, response


def _file_facts(response: httpx2.Response, label: str) -> tuple[int, str | None, str | None]:
    """(file size, commit, sha256) from a range response and the hub redirect before it; a commit or SHA-256
    that is not one is refused (HeaderError), since the cache keeps them next to the header."""
    match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
    size = int(match.group(3)) if match and match.group(3) != "*" else None
    commit = sha = None
    for step in [*response.history, response]:
        commit = commit or step.headers.get("X-Repo-Commit")
        sha = sha or (step.headers.get("X-Linked-Etag") or "").strip('"') or None
        linked_size = step.headers.get("X-Linked-Size")
        if size is None and linked_size and _NUMBER.fullmatch(linked_size):
            size = int(linked_size)
    if size is None and response.status_code == 200 and _NUMBER.fullmatch(response.headers.get("Content-Length", "")):
        size = int(response.headers["Content-Length"]) or None
    if size is None:
        raise HeaderError(f"The hub did not say how large {label} is, so its header cannot be checked.")
    try:
        if commit is not None:
            safe_names.check_commit(commit, where=label)
        if sha is not None:
            safe_names.check_sha256(sha, where=label)
    except safe_names.UnsafeName as error:
        raise HeaderError(str(error)) from error
    return size, commit, sha


def fetch_header(repo_id: str, filename: str, revision: str = "main", *,
                 first_read: int = FIRST_READ_BYTES) -> _Fetched:
    """Read the GGUF header of a hub file with as few range requests as the header needs."""
    _check_names(repo_id, filename, revision)
    if hub.is_offline():
        raise HeaderUnavailable(f"{hub.OFFLINE} (offline mode is on) — {HEADER_NEEDED}")
    label = f"{repo_id}/{filename}"
    url = hf_hub_url(repo_id, filename, revision=revision, endpoint=hub.endpoint())
    data, response = _read_range(url, 0, first_read - 1, label)
    size, commit, sha = _file_facts(response, label)
    buffer = bytearray(data)
    while True:
        try:
            header_end = _header_end(bytes(buffer), size, label, filename)
            break
        except GGUFHeaderIncomplete as incomplete:
            want = min(size, max(incomplete.needed_bytes, 2 * len(buffer)))
            if want > MAX_HEADER_BYTES:
                raise HeaderError(f"The header of {label} claims more than {MAX_HEADER_BYTES >> 20} MiB; "
                                  "refusing to read it.") from incomplete
            if want <= len(buffer):
                raise HeaderError(f"The header of {label} runs past the end of the file.") from incomplete
            more, _ = _read_range(url, len(buffer), want - 1, label)
            if not more:
                raise HeaderError(f"The hub sent no bytes for the header of {label}.") from incomplete
            buffer += more
        except GGUFError as error:
            raise HeaderError(f"Not a readable GGUF file: {error}") from error
    header = bytes(buffer[:header_end or len(buffer)])
    log.info("fetched the header of %s: %d bytes of %d", label, len(header), size)
    return _Fetched(header, size, commit, sha)


def _header_end(header: bytes, file_size: int, label: str, filename: str) -> int:
    """Where the tensor data begins; GGUFHeaderIncomplete when ``header`` stops before it."""
    if is_later_split_part(filename) or is_projector_name(filename):
        # No model description for core/gguf/reader.py to require (a later part has none, a projector's is a
        # vision encoder's): gguf's reader finds the end of the tensor table.
        return split_part_tensors(header, file_size, label)[1]
    return parse_model_info(header, file_size=file_size, source=label).tensor_data_offset


# -- the cache ------------------------------------------------------------------------------------------------------
class HeaderCache:
    """Remote headers on disk by repository / revision / file, with parsed ModelInfo kept in memory."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or locations.cache_dir() / "headers"
        self._parsed: dict[Path, tuple[int, ModelInfo]] = {}
        self._lock = threading.Lock()

    def _paths(self, repo_id: str, revision: str, filename: str) -> tuple[Path, Path]:
        _check_names(repo_id, filename, revision)
        folder = self.root / quote(repo_id, safe="") / quote(revision, safe="")
        stem = quote(filename, safe="")
        return (safe_names.inside(self.root, folder / f"{stem}.header"),
                safe_names.inside(self.root, folder / f"{stem}.json"))

    def lookup(self, repo_id: str, filename: str, revision: str = "main", *,
               sha256: str | None = None) -> HeaderEntry | None:
        """The cached entry, or None when absent or known to be stale (its sha256 differs from ``sha256``)."""
        header_path, meta_path = self._paths(repo_id, revision, filename)
        try:
            meta = json.loads(meta_path.read_text())
            entry = HeaderEntry(repo_id, filename, revision, meta.get("commit"), meta.get("sha256"),
                                int(meta["file_size"]), header_path, int(meta["header_length"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not _known_or_absent(entry.commit, safe_names.is_commit) or \
                not _known_or_absent(entry.sha256, safe_names.is_sha256):
            return None  # written by something else than this cache: fetch it again
        if sha256 and entry.sha256 and sha256 != entry.sha256:
            return None
        if not header_path.is_file() or header_path.stat().st_size != entry.header_length:
            return None
        return entry

    def get(self, repo_id: str, filename: str, revision: str = "main", *, sha256: str | None = None,
            refresh: bool = False) -> HeaderEntry:
        """The header of a hub file, from the cache or fetched (and then cached)."""
        if not refresh:
            cached = self.lookup(repo_id, filename, revision, sha256=sha256)
            if cached is not None:
                return cached
        fetched = fetch_header(repo_id, filename, revision)
        return self._store(repo_id, filename, revision, fetched)

    def _store(self, repo_id: str, filename: str, revision: str, fetched: _Fetched) -> HeaderEntry:
        header_path, meta_path = self._paths(repo_id, revision, filename)
        header_path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(header_path, fetched.data)
        meta = {"repo_id": repo_id, "filename": filename, "revision": revision, "commit": fetched.commit,
                "sha256": fetched.sha256, "file_size": fetched.file_size, "header_length": len(fetched.data)}
        _atomic_write(meta_path, json.dumps(meta, indent=1).encode())
        return HeaderEntry(repo_id, filename, revision, fetched.commit, fetched.sha256, fetched.file_size,
                           header_path, len(fetched.data))

    def model_info(self, entry: HeaderEntry) -> ModelInfo:
        """The entry's ModelInfo: kept in memory, and as a JSON summary beside the header on disk.

        Parsing a header with a 150k-262k token vocabulary takes 30-150 ms; reading the summary ~1 ms, which
        is what makes a warm fit check of the whole catalog fast after a restart too.
        """
        stamp = entry.header_path.stat().st_mtime_ns
        with self._lock:
            known = self._parsed.get(entry.header_path)
        if known and known[0] == stamp:
            return known[1]
        summary_path = entry.header_path.with_suffix(".info.json")
        info = _read_summary(summary_path, stamp)
        if info is None:
            info = entry.model_info()
            _write_summary(summary_path, stamp, info)
        with self._lock:
            self._parsed[entry.header_path] = (stamp, info)
        return info

    def projector_info(self, entry: HeaderEntry) -> ProjectorInfo:
        """A projector's figures from its cached header (core.fit.projector.read_projector_info on a sparse stub,
        the same reading as for the downloaded file), kept as JSON beside the header. ProjectorError when the
        header is not a projector's."""
        stamp = entry.header_path.stat().st_mtime_ns
        summary_path = entry.header_path.with_suffix(".projector.json")
        try:
            data = json.loads(summary_path.read_bytes())
            if data.get("stamp") == stamp:
                return ProjectorInfo.from_json(data.get("info"), entry.label)
        except (OSError, ValueError, AttributeError):
            pass  # absent or damaged: read the header again
        with header_stub(entry.header_bytes(), entry.file_size) as stub:
            info = read_projector_info(stub, source=entry.label)
        try:
            _atomic_write(summary_path, json.dumps({"stamp": stamp, "info": info.to_json()}).encode())
        except OSError as error:
            log.debug("not caching the projector figures %s: %s", summary_path, error)
        return info


def _check_names(repo_id: str, filename: str, revision: str) -> None:
    """The three names a header's place in the cache is built from (UnsafeName, a ValueError, if one is unsafe)."""
    safe_names.check_repo_id(repo_id)
    safe_names.check_file_name(filename)
    safe_names.check_revision(revision)


def _known_or_absent(value, is_valid) -> bool:
    return value is None or is_valid(value)


# -- parsed headers as JSON (a cache: any mismatch means "parse again") ---------------------------------------------
_TENSOR_FIELDS = [f.name for f in dataclasses.fields(TensorInfo) if f.init]
_SUMMARY_FORMAT = [3, [f.name for f in dataclasses.fields(ModelInfo) if f.init], _TENSOR_FIELDS]
_SHAPE_AT = _TENSOR_FIELDS.index("shape")


def _encode(value):
    if isinstance(value, ArraySummary):
        return {"$array": [value.type_name, value.length]}
    if isinstance(value, StringSummary):
        return {"$string": value.n_bytes}
    if isinstance(value, (tuple, list)):
        return [_encode(v) for v in value]
    if isinstance(value, Mapping):
        return {"$map": [[k, _encode(v)] for k, v in value.items()]}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"cannot summarise {type(value).__name__}")


def _encode_tensor(tensor: TensorInfo) -> list:
    return [getattr(tensor, name) for name in _TENSOR_FIELDS]


def _decode_tensor(row: list) -> TensorInfo:
    row[_SHAPE_AT] = tuple(row[_SHAPE_AT])
    return TensorInfo(*row)


def _decode(value):
    if isinstance(value, list):
        return tuple(_decode(v) for v in value)
    if isinstance(value, dict):
        if "$array" in value:
            return ArraySummary(*value["$array"])
        if "$string" in value:
            return StringSummary(value["$string"])
        if "$map" in value:
            return {k: _decode(v) for k, v in value["$map"]}
        raise ValueError("unknown summary object")
    return value


def _write_summary(path: Path, stamp: int, info: ModelInfo) -> None:
    try:
        fields = {f.name: _encode(getattr(info, f.name)) for f in dataclasses.fields(ModelInfo)
                  if f.init and f.name != "tensors"}
        fields["tensors"] = [_encode_tensor(t) for t in info.tensors]
        _atomic_write(path, json.dumps({"format": _SUMMARY_FORMAT, "stamp": stamp, "info": fields}).encode())
    except (TypeError, ValueError, OSError) as error:
        log.debug("not caching the parsed header %s: %s", path, error)


def _read_summary(path: Path, stamp: int) -> ModelInfo | None:
    try:
        data = json.loads(path.read_bytes())
        if data.get("format") != _SUMMARY_FORMAT or data.get("stamp") != stamp:
            return None
        info = data["info"]
        values = {name: _decode(value) for name, value in info.items() if name != "tensors"}
        values["tensors"] = tuple(_decode_tensor(row) for row in info["tensors"])
        return ModelInfo(**values)
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def is_later_split_part(filename: str) -> bool:
    """``X-00002-of-00003.gguf`` and later: parts that carry tensors but no model description."""
    match = _SPLIT.match(filename.rsplit("/", 1)[-1])
    return match is not None and int(match["index"]) > 1


def split_part_tensors(header: bytes, file_size: int, label: str) -> tuple[tuple[TensorInfo, ...], int]:
    """(tensors, tensor-data offset) of a later split part, read by the gguf package's GGUFReader.

    core/gguf/reader.py only opens first parts; later parts are small (split keys and a tensor table), so the
    reader runs on a temporary sparse stub of the part. Raises GGUFHeaderIncomplete when ``header`` stops
    before the tensor data begins (reading past it would see the stub's zeros).
    """
    from gguf import GGMLQuantizationType, GGUFReader

    with header_stub(header, file_size) as stub:
        try:
            reader = GGUFReader(stub, "r")
        except (ValueError, IndexError, KeyError, OverflowError) as error:
            if len(header) < file_size:  # zeros past a cut header read as nonsense: read more first
                raise GGUFHeaderIncomplete(f"{label}: the header may go on past byte {len(header)}",
                                           needed_bytes=2 * len(header)) from error
            raise GGUFError(f"{label}: cannot read this split part's tensor table ({error})") from error
        if reader.data_offset > len(header):
            raise GGUFHeaderIncomplete(f"{label}: the header goes on past byte {len(header)}",
                                       needed_bytes=reader.data_offset)
        tensors = tuple(
            TensorInfo(t.name, int(t.tensor_type), GGMLQuantizationType(int(t.tensor_type)).name,
                       tuple(int(d) for d in t.shape), int(t.data_offset - reader.data_offset), int(t.n_bytes))
            for t in reader.tensors)
        offset = int(reader.data_offset)
        del reader  # release the memory map before the folder goes
    return tensors, offset


@contextmanager
def header_stub(header: bytes, file_size: int) -> Iterator[Path]:
    """A temporary sparse file of the real size holding only the header: what gguf's GGUFReader needs to open a
    file it cannot have whole."""
    with tempfile.TemporaryDirectory(prefix="llamadesk-stub-") as folder:
        yield _write_stub(Path(folder) / "stub.gguf", header, file_size)


def read_split_part_tensors(path: str | os.PathLike) -> tuple[TensorInfo, ...]:
    """The tensor table of a local later split part, read in growing chunks (never the whole file)."""
    size = os.path.getsize(path)
    want = min(size, FIRST_READ_BYTES)
    with open(path, "rb") as handle:
        while True:
            handle.seek(0)
            try:
                return split_part_tensors(handle.read(want), size, os.fspath(path))[0]
            except GGUFHeaderIncomplete as incomplete:
                grown = min(size, max(incomplete.needed_bytes, 2 * want))
                if grown <= want or grown > MAX_HEADER_BYTES:
                    raise GGUFError(f"{os.fspath(path)}: the split part's header does not end") from incomplete
                want = grown


def combine_split(first: ModelInfo, later_parts: Sequence[tuple[TensorInfo, ...]] = (),
                  later_sizes: Sequence[int | None] = ()) -> ModelInfo:
    """One ModelInfo for a split model: the first part's description with every part's tensors and sizes."""
    if not later_parts:
        return first
    tensors = first.tensors + tuple(t for part in later_parts for t in part)
    sizes = [first.file_size, *later_sizes]
    return dataclasses.replace(first, tensors=tensors,
                               file_size=None if None in sizes else sum(sizes),  # type: ignore[arg-type]
                               parameter_count=sum(t.n_elements for t in tensors))


def write_sparse_stub(entry: HeaderEntry, path: str | os.PathLike) -> Path:
    """Write the header then extend the file to the real size without storing data (for the exact dry run)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    return _write_stub(target, entry.header_bytes(), entry.file_size)


def _write_stub(path: Path, header: bytes, file_size: int) -> Path:
    """The header, then a hole up to the file's real size (sparse: no data is stored)."""
    with open(path, "wb") as handle:
        handle.write(header)
        handle.truncate(max(file_size, len(header)))
    return path


def _atomic_write(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    partial.write_bytes(data)
    os.replace(partial, path)
