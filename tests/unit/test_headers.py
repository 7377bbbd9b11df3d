"""Remote GGUF headers: growing range reads through huggingface_hub, the on-disk cache, sparse stubs."""
from __future__ import annotations

import pytest

from core.models import hub
from core.gguf.reader import read_model_info
from core.models.remote_headers import FIRST_READ_BYTES, HeaderCache, HeaderError, HeaderUnavailable, write_sparse_stub
from tests.fixtures.fake_hub import TEST_TOKEN, FakeFile
from tests.fixtures.tiny_gguf import write_tiny_model

REPO = "org/Smol-GGUF"
NAME = "SmolLM2-135M-Instruct-Q4_1.gguf"


@pytest.fixture
def smol_hub(fake_hub, smollm2):  # noqa: F811
    fake_hub.add_repo(REPO, {NAME: smollm2.read_bytes()})
    return fake_hub


def _cdn_ranges(server):
    return [r.range for r in server.requests_for(NAME)]


def test_header_is_read_in_growing_ranges_and_parses_like_the_local_file(smol_hub, smollm2):
    entry = HeaderCache().get(REPO, NAME)
    ranges = _cdn_ranges(smol_hub)
    assert ranges[0] == f"bytes=0-{FIRST_READ_BYTES - 1}"
    assert 1 < len(ranges) <= 5
    assert all(r.startswith("bytes=") for r in ranges)
    local = read_model_info(smollm2)
    remote = entry.model_info()
    assert entry.file_size == smollm2.stat().st_size
    assert entry.header_length == local.tensor_data_offset < 4 << 20
    assert (remote.architecture, remote.n_layers, remote.weights_bytes()) == \
        (local.architecture, local.n_layers, local.weights_bytes())
    assert entry.sha256 == smol_hub.repos[REPO].files[NAME].sha256
    assert entry.commit == smol_hub.repos[REPO].commit


def test_second_read_comes_from_the_disk_cache_without_requests(smol_hub):
    HeaderCache().get(REPO, NAME)
    before = len(smol_hub.requests)
    again = HeaderCache().get(REPO, NAME)
    assert len(smol_hub.requests) == before
    assert again.model_info().architecture == "llama"


def test_cache_works_offline_and_says_so_when_missing(smol_hub, monkeypatch):
    HeaderCache().get(REPO, NAME)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert HeaderCache().get(REPO, NAME).file_size > 0
    with pytest.raises(HeaderUnavailable, match="offline"):
        HeaderCache().get(REPO, "other.gguf")


def test_a_changed_sha256_refetches(smol_hub):
    cache = HeaderCache()
    cache.get(REPO, NAME)
    before = len(smol_hub.requests)
    cache.get(REPO, NAME, sha256="0" * 64)
    assert len(smol_hub.requests) > before


def test_small_header_needs_one_request(fake_hub, tmp_path):  # noqa: F811
    tiny = write_tiny_model(tmp_path / "tiny.gguf")
    fake_hub.add_repo("t/Tiny-GGUF", {"tiny.gguf": FakeFile.virtual(tiny.read_bytes()[:200_000], 5 << 30)})
    entry = HeaderCache().get("t/Tiny-GGUF", "tiny.gguf")
    assert entry.file_size == 5 << 30
    assert len(fake_hub.requests_for("tiny.gguf")) == 1


def test_sparse_stub_has_the_real_size_and_a_readable_header(smol_hub, tmp_path, smollm2):
    entry = HeaderCache().get(REPO, NAME)
    stub = write_sparse_stub(entry, tmp_path / "stub" / NAME)
    assert stub.stat().st_size == smollm2.stat().st_size
    assert stub.stat().st_blocks * 512 < 8 << 20, "the stub should be sparse"
    assert read_model_info(stub).n_layers == read_model_info(smollm2).n_layers


def test_not_a_gguf_file_is_a_header_error(fake_hub):  # noqa: F811
    fake_hub.add_repo("x/Bad-GGUF", {"bad.gguf": b"NOPE" * 1000})
    with pytest.raises(HeaderError, match="Not a readable GGUF"):
        HeaderCache().get("x/Bad-GGUF", "bad.gguf")


def test_gated_header_needs_login_and_uses_the_token(fake_hub, smollm2, monkeypatch):  # noqa: F811
    data = smollm2.read_bytes()
    fake_hub.add_repo("g/Gated-GGUF", {NAME: FakeFile.virtual(data[:3 << 20], len(data))}, gated=True)
    with pytest.raises(hub.HubAccessDenied, match="gated"):
        HeaderCache().get("g/Gated-GGUF", NAME)
    monkeypatch.setenv("HF_TOKEN", TEST_TOKEN)
    assert HeaderCache().get("g/Gated-GGUF", NAME).header_length > 0
    assert all(r.authorization is None for r in fake_hub.requests_for(NAME)), "no token to the CDN"


def test_missing_file_is_not_found(smol_hub):
    with pytest.raises(hub.HubNotFound):
        HeaderCache().get(REPO, "absent.gguf")


def test_unsafe_name_is_refused(smol_hub):
    with pytest.raises(hub.UnsafeFileName):
        HeaderCache().get(REPO, "../../etc/passwd")


def test_parsed_header_is_kept_as_a_summary_that_reads_back_equal(smol_hub):
    entry = HeaderCache().get(REPO, NAME)
    parsed = HeaderCache().model_info(entry)
    summary = entry.header_path.with_suffix(".info.json")
    assert summary.is_file()
    again = HeaderCache().model_info(entry)  # a new cache object: from the summary, not a parse
    assert again == parsed
    summary.write_text("{broken")
    assert HeaderCache().model_info(entry) == parsed
