"""Downloads and header reads against a hostile or broken hub (the fake hub on 127.0.0.1, HF_ENDPOINT at it).

Whatever the server sends, each case ends the same way: nothing is written outside the cache, nothing in the
cache looks like a finished file, the user gets one sentence saying what was wrong, and the number of tries is
bounded (a server that never helps must not be asked forever).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest

from core.models import hub
from core.models.downloads.cache_layout import PART_SUFFIX
from core.models.downloads.manager import (
    ChecksumMismatch,
    DownloadError,
    DownloadManager,
    DownloadRequest,
    HubCacheLayout,
    NetworkError,
    NotEnoughDiskSpace,
    RetryPolicy,
    UnsafeName,
)
from core.models.library import LibrarySources, LocalModel, delete, scan
from core.models.remote_headers import HeaderCache, HeaderError
from tests.fixtures.fake_hub import FakeFile, Fault

REPO = "evil/model"
NAME = "m.gguf"
MiB = 1 << 20
ALWAYS = 10 ** 6
BOUNDED = RetryPolicy(stall_seconds=0.5, max_retries=3, first_backoff=0.001, max_backoff=0.004,
                      min_progress_bytes=64 << 10)
# The first try, the retries without progress, and one more for a try that did bring bytes.
MAX_BODY_GETS = BOUNDED.max_retries + 2
ESCAPE = "../../../../escaped"  # from snapshots/, refs/ or blobs/ of the repository: tmp_path/escaped


@pytest.fixture
def payload() -> bytes:
    return os.urandom(2 * MiB + 123)


@pytest.fixture
def evil_hub(fake_hub, payload):  # noqa: F811
    fake_hub.add_repo(REPO, {NAME: payload})
    return fake_hub


def _run(tmp_path: Path, request: DownloadRequest, **options) -> tuple[str, DownloadError | None]:
    """Download through the manager, giving up waiting after 60 s (an endless loop shows as a test failure, not a
    hang); returns the final state and the error."""
    manager = DownloadManager(state_file=tmp_path / "downloads.json", policy=BOUNDED, **options)
    try:
        job = manager.enqueue(request)
    except DownloadError as error:
        manager.close()
        return "refused", error
    result = manager.wait(job, timeout=60)
    manager.close(timeout=5)
    return result.state.value, manager.error(job)


def _body_gets(server) -> list:
    return [r for r in server.requests if r.method == "GET" and r.path.startswith("/cdn/")]


def _cache() -> Path:
    return hub.hf_cache_dir()


def _written_outside_the_cache(tmp_path: Path) -> list[Path]:
    """Files under tmp_path that a download may have written, outside the Hugging Face cache."""
    cache = _cache()
    return [p for p in tmp_path.rglob("*") if (p.is_file() or p.is_symlink()) and cache not in p.parents
            and p.name != "downloads.json" and not p.name.startswith(".") and p.parent != tmp_path / "hf"]


def _finished_looking(root: Path) -> list[Path]:
    """Anything a program would take for a finished file: a blob, a snapshot link, a ref, a cached header."""
    if not root.exists():
        return []
    return [p for p in root.rglob("*") if (p.is_file() or p.is_symlink()) and not p.name.endswith(PART_SUFFIX)]


def _one_sentence(message: str) -> bool:
    return message.endswith(".") and re.search(r"[.!?] [A-Z]", message) is None and "\n" not in message


def _assert_contained(tmp_path: Path) -> None:
    assert not (tmp_path / "escaped").exists(), "a server-given name led outside the cache"
    assert _written_outside_the_cache(tmp_path) == []
    assert _finished_looking(_cache()) == []


# -- every server-given name that becomes part of a path -------------------------------------------------------------
def test_a_commit_that_climbs_out_of_the_cache_is_refused(fake_hub, payload, tmp_path):  # noqa: F811
    fake_hub.add_repo(REPO, {NAME: payload}, commit=ESCAPE)
    state, error = _run(tmp_path, DownloadRequest(REPO, NAME))
    assert state == "failed" and isinstance(error, UnsafeName)
    assert f"commit '{ESCAPE}'" in str(error) and "not a commit hash (40 hexadecimal digits)" in str(error)
    assert _one_sentence(str(error))
    assert _body_gets(fake_hub) == []
    _assert_contained(tmp_path)


def test_a_sha256_that_climbs_out_of_the_cache_is_refused(fake_hub, payload, tmp_path):  # noqa: F811
    fake_hub.add_repo(REPO, {NAME: FakeFile(payload, len(payload), ESCAPE)})
    state, error = _run(tmp_path, DownloadRequest(REPO, NAME))
    assert state == "failed" and isinstance(error, UnsafeName)
    assert f"'{ESCAPE}' as the SHA-256" in str(error) and "64 hexadecimal digits" in str(error)
    assert _one_sentence(str(error))
    assert _body_gets(fake_hub) == []
    _assert_contained(tmp_path)


@pytest.mark.parametrize("request_", [
    DownloadRequest(REPO, NAME, revision=ESCAPE),
    DownloadRequest(REPO, NAME, revision="refs/../../../../../escaped"),
    DownloadRequest("../../../escaped", NAME),
    DownloadRequest("evil/..", NAME),
    DownloadRequest(REPO, "sub/../../../../../escaped.gguf"),
    DownloadRequest(REPO, "m\x00.gguf"),
    DownloadRequest(REPO, NAME, sha256="../" * 3 + "escaped"),
], ids=["revision", "revision-under-refs", "repo-id", "repo-id-dots", "file-name", "nul", "listed-sha256"])
def test_names_in_a_request_are_refused_before_any_request(evil_hub, tmp_path, request_):
    before = len(evil_hub.requests)
    state, error = _run(tmp_path, request_)
    assert state == "refused" and isinstance(error, UnsafeName)
    assert _one_sentence(str(error)), str(error)
    assert re.search(r"Refusing the (revision|repository id|file name)|not a SHA-256", str(error))
    assert len(evil_hub.requests) == before
    _assert_contained(tmp_path)


def test_the_cache_layout_keeps_every_path_inside_the_repository_folder(tmp_path):
    layout = HubCacheLayout(tmp_path / "hub", REPO)
    good_sha, good_commit = "a" * 64, "b" * 40
    for build in (lambda: layout.blob(ESCAPE), lambda: layout.part("A" * 64),
                  lambda: layout.pointer(ESCAPE, NAME), lambda: layout.pointer(good_commit, "../x.gguf"),
                  lambda: layout.ref("../../x")):
        with pytest.raises(Exception) as refused:
            build()
        assert isinstance(refused.value, ValueError)
    assert layout.blob(good_sha).parent == layout.repo_dir / "blobs"
    assert layout.pointer(good_commit, "sub/m.gguf") == layout.repo_dir / "snapshots" / good_commit / "sub" / NAME


def test_a_snapshot_folder_linked_out_of_the_cache_is_not_written_through(evil_hub, payload, tmp_path):
    """A planted link (snapshots/<commit> pointing elsewhere) is found when the path is resolved."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    layout = HubCacheLayout(_cache(), REPO)
    layout.prepare()
    (layout.repo_dir / "snapshots" / evil_hub.repos[REPO].commit).symlink_to(elsewhere, target_is_directory=True)
    state, error = _run(tmp_path, DownloadRequest(REPO, NAME))
    assert state == "failed" and "outside" in str(error)
    assert list(elsewhere.iterdir()) == []


def test_a_listing_whose_commit_climbs_out_is_refused(fake_hub, payload):  # noqa: F811
    fake_hub.add_repo(REPO, {NAME: payload}, commit=ESCAPE)
    with pytest.raises(hub.HubError, match=r"commit '\.\./.*not a commit hash"):
        hub.list_files(REPO)


def test_split_part_names_that_climb_out_leave_the_model_incomplete(fake_hub, payload):  # noqa: F811
    fake_hub.add_repo(REPO, {"x-00001-of-00002.gguf": payload[:10],
                             "../../x-00002-of-00002.gguf": payload[10:20]})
    listing = hub.list_files(REPO)
    assert listing.rejected == ("../../x-00002-of-00002.gguf",)
    (model,) = listing.models
    assert not model.complete and [p.filename for p in model.parts] == ["x-00001-of-00002.gguf"]


def test_search_hits_with_unusable_repository_ids_are_left_out(fake_hub):  # noqa: F811
    fake_hub.add_repo("fine/Model-GGUF", {NAME: b"x"})
    fake_hub.add_repo("../../Escaped-GGUF", {NAME: b"x"})
    assert [hit.repo_id for hit in hub.search("GGUF")] == ["fine/Model-GGUF"]


# -- the header cache (range reads) ----------------------------------------------------------------------------------
def test_header_reads_refuse_a_commit_or_sha256_that_is_not_one(fake_hub, payload, tmp_path):  # noqa: F811
    fake_hub.add_repo(REPO, {NAME: payload}, commit=ESCAPE)
    fake_hub.add_repo("evil/other", {NAME: FakeFile(payload, len(payload), ESCAPE)})
    root = tmp_path / "headers"
    with pytest.raises(HeaderError, match=r"commit '\.\./.*not a commit hash") as first:
        HeaderCache(root).get(REPO, NAME)
    with pytest.raises(HeaderError, match=r"as the SHA-256 of evil/other/m.gguf, which is not a SHA-256") as second:
        HeaderCache(root).get("evil/other", NAME)
    assert _one_sentence(str(first.value)) and _one_sentence(str(second.value))
    assert _finished_looking(root) == []


@pytest.mark.parametrize("repo_id, filename, revision", [
    (REPO, NAME, ".."), (REPO, NAME, "../../escaped"), ("..", NAME, "main"), (REPO, "../x.gguf", "main")])
def test_header_cache_paths_refuse_names_that_climb_out(evil_hub, tmp_path, repo_id, filename, revision):
    before = len(evil_hub.requests)
    with pytest.raises(hub.UnsafeFileName, match="Refusing the"):
        HeaderCache(tmp_path / "headers").get(repo_id, filename, revision)
    assert len(evil_hub.requests) == before
    assert not (tmp_path / "headers").exists() or _finished_looking(tmp_path / "headers") == []


def test_header_reads_refuse_a_redirect_to_a_file_address(evil_hub, tmp_path):
    evil_hub.add_fault(REPO, NAME, Fault(redirect_to="file:///etc/passwd", times=ALWAYS))
    with pytest.raises(HeaderError, match="redirected to a file:// address, which LlamaDesk does not follow"):
        HeaderCache(tmp_path / "headers").get(REPO, NAME)


# -- a server that misbehaves while sending ----------------------------------------------------------------------------
def test_short_bodies_from_a_server_that_ignores_range_end_with_the_bytes_kept(evil_hub, payload, tmp_path):
    """The reported loop: Content-Length smaller than the body, and every Range request answered from byte 0."""
    evil_hub.add_fault(REPO, NAME, Fault(ignore_range=True, length_short_by=MiB, times=ALWAYS))
    state, error = _run(tmp_path, DownloadRequest(REPO, NAME))
    assert state == "failed" and isinstance(error, NetworkError)
    assert "stopped sending before the end of the file" in str(error) and "resume it later" in str(error)
    assert _one_sentence(str(error))
    assert len(_body_gets(evil_hub)) <= MAX_BODY_GETS
    (part,) = _cache().rglob(f"*{PART_SUFFIX}")
    assert part.read_bytes() == payload[: len(payload) - MiB]  # kept for a resume: a fixed server can finish it
    _assert_contained(tmp_path)


def test_short_bodies_with_range_end_with_the_bytes_kept(evil_hub, payload, tmp_path):
    evil_hub.add_fault(REPO, NAME, Fault(length_short_by=MiB, times=ALWAYS))
    state, error = _run(tmp_path, DownloadRequest(REPO, NAME))
    assert state == "failed" and isinstance(error, NetworkError) and _one_sentence(str(error))
    assert len(_body_gets(evil_hub)) <= MAX_BODY_GETS
    _assert_contained(tmp_path)


def test_a_resume_answered_from_byte_zero_skips_what_is_already_here(evil_hub, payload, tmp_path):
    evil_hub.add_fault(REPO, NAME, Fault(drop_after=MiB + 5))
    evil_hub.add_fault(REPO, NAME, Fault(ignore_range=True))
    state, error = _run(tmp_path, DownloadRequest(REPO, NAME))
    assert state == "done", error
    assert [r.range for r in _body_gets(evil_hub)] == [None, f"bytes={MiB + 5}-"]
    (pointer,) = (_cache() / "models--evil--model" / "snapshots").rglob(NAME)
    assert pointer.read_bytes() == payload


def test_a_server_error_on_every_try_ends_after_a_bounded_number_of_tries(evil_hub, tmp_path):
    evil_hub.add_fault(REPO, NAME, Fault(cdn_status=503, times=ALWAYS))
    state, error = _run(tmp_path, DownloadRequest(REPO, NAME))
    assert state == "failed" and isinstance(error, NetworkError)
    assert "HTTP 503" in str(error) and _one_sentence(str(error))
    assert len(_body_gets(evil_hub)) == BOUNDED.max_retries + 1
    _assert_contained(tmp_path)


@pytest.mark.parametrize("where, scheme", [("file:///etc/passwd", "file"), ("ftp://127.0.0.1:9/m.gguf", "ftp")])
def test_a_redirect_to_a_file_address_is_refused_saying_why(evil_hub, tmp_path, where, scheme):
    evil_hub.add_fault(REPO, NAME, Fault(redirect_to=where, times=ALWAYS))
    state, error = _run(tmp_path, DownloadRequest(REPO, NAME))
    assert state == "failed"
    assert str(error) == (f"Cannot download {REPO}/{NAME}: the hub redirected to a {scheme}:// address, which "
                          "LlamaDesk does not follow.")
    assert _body_gets(evil_hub) == []
    _assert_contained(tmp_path)


def test_a_redirect_loop_ends_with_a_sentence(evil_hub, tmp_path):
    evil_hub.add_fault(REPO, NAME, Fault(redirect_to="self", times=ALWAYS))
    state, error = _run(tmp_path, DownloadRequest(REPO, NAME))
    assert state == "failed" and "kept redirecting" in str(error) and _one_sentence(str(error))
    assert len([r for r in evil_hub.requests if "/resolve/" in r.path]) <= 40
    _assert_contained(tmp_path)


def test_an_endless_body_is_cut_at_the_announced_size(evil_hub, tmp_path):
    evil_hub.add_fault(REPO, NAME, Fault(endless=True, times=ALWAYS))
    state, error = _run(tmp_path, DownloadRequest(REPO, NAME))
    assert state == "failed" and isinstance(error, ChecksumMismatch)
    assert "more bytes" in str(error) and _one_sentence(str(error))
    assert len(_body_gets(evil_hub)) == 1
    _assert_contained(tmp_path)


@pytest.mark.parametrize("lie, phrase", [(-MiB, "more bytes"), (MiB, "HTTP 416")])
def test_a_size_lie_in_either_direction_ends_with_a_sentence(evil_hub, tmp_path, lie, phrase):
    evil_hub.add_fault(REPO, NAME, Fault(size_lie=lie, times=ALWAYS))
    state, error = _run(tmp_path, DownloadRequest(REPO, NAME))
    assert state == "failed" and phrase in str(error) and _one_sentence(str(error))
    assert "the server answered HTTP" not in str(error)
    assert len(_body_gets(evil_hub)) <= 2
    _assert_contained(tmp_path)


def test_a_huge_announced_size_stops_at_the_free_space_check(evil_hub, tmp_path):
    evil_hub.add_fault(REPO, NAME, Fault(size_lie=10 ** 15, times=ALWAYS))
    state, error = _run(tmp_path, DownloadRequest(REPO, NAME))
    assert state == "failed" and isinstance(error, NotEnoughDiskSpace) and _one_sentence(str(error))
    assert _body_gets(evil_hub) == []
    _assert_contained(tmp_path)


# -- the library: names from manifests and links -------------------------------------------------------------------
def test_an_ollama_manifest_naming_a_blob_outside_is_an_entry_error(tmp_path):
    root = tmp_path / "ollama"
    manifest = root / "manifests" / "registry.ollama.ai" / "library" / "evil" / "latest"
    manifest.parent.mkdir(parents=True)
    (root / "blobs").mkdir()
    manifest.write_text(json.dumps({"layers": [
        {"mediaType": "application/vnd.ollama.image.model", "digest": "sha256:../../../escaped"}]}))
    (model,) = scan(LibrarySources(hf_cache=tmp_path / "none", app_dir=tmp_path / "none", lmstudio_dirs=(),
                                   ollama_dir=root), inspect=False)
    assert model.error is not None and "not a sha256:<64 hexadecimal digits> digest" in model.error


def test_deleting_a_cache_model_whose_link_leads_outside_keeps_the_outside_file(tmp_path):
    outside = tmp_path / "precious.gguf"
    outside.write_bytes(b"the user's own file")
    pointer = tmp_path / "hf" / "models--evil--model" / "snapshots" / ("c" * 40) / NAME
    pointer.parent.mkdir(parents=True)
    (pointer.parent.parent.parent / "blobs").mkdir()
    pointer.symlink_to(outside)
    removed = delete(LocalModel(NAME, pointer, "huggingface", 19, (pointer,), repo_id=REPO))
    assert removed == [pointer]
    assert outside.read_bytes() == b"the user's own file"


def test_a_blob_named_by_its_hash_is_what_a_good_hub_gets(evil_hub, payload, tmp_path):
    """The same checks let an honest answer through: the file lands where huggingface_hub expects it."""
    state, error = _run(tmp_path, DownloadRequest(REPO, NAME))
    assert state == "done", error
    blob = _cache() / "models--evil--model" / "blobs" / hashlib.sha256(payload).hexdigest()
    assert blob.read_bytes() == payload
