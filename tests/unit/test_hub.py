"""Hub search and file listing through huggingface_hub, against the fake hub."""
from __future__ import annotations

import pytest

from core.models import hub


@pytest.fixture
def hub_with_repos(fake_hub):  # noqa: F811
    fake_hub.add_repo("a/Popular-GGUF", {"m-Q4_K_M.gguf": b"x" * 100, "m-Q8_0.gguf": b"y" * 200, "README.md": b"r"},
                      downloads=900, likes=5, last_modified="2025-01-01T00:00:00.000Z")
    fake_hub.add_repo("b/Liked-GGUF", {"m-F16.gguf": b"z" * 10}, downloads=10, likes=99,
                      last_modified="2025-03-01T00:00:00.000Z")
    fake_hub.add_repo("c/Recent-GGUF", {"m-Q6_K.gguf": b"w" * 10}, downloads=1, likes=1,
                      last_modified="2025-06-01T00:00:00.000Z")
    return fake_hub


@pytest.mark.parametrize("sort, first", [("downloads", "a/Popular-GGUF"), ("likes", "b/Liked-GGUF"),
                                         ("recent", "c/Recent-GGUF")])
def test_search_sorts_and_filters_on_gguf(hub_with_repos, sort, first):
    hits = hub.search("gguf", sort=sort)
    assert hits[0].repo_id == first
    assert {h.repo_id for h in hits} == {"a/Popular-GGUF", "b/Liked-GGUF", "c/Recent-GGUF"}
    (search,) = [r for r in hub_with_repos.requests if r.path.startswith("/api/models?")]
    assert "filter=gguf" in search.path


def test_search_with_no_hit_is_empty(hub_with_repos):
    assert hub.search("nothing-like-this") == []


def test_list_files_gives_sizes_and_sha256_from_lfs_metadata(hub_with_repos):
    listing = hub.list_files("a/Popular-GGUF")
    assert [m.name for m in listing.models] == ["m-Q4_K_M.gguf", "m-Q8_0.gguf"]
    q4 = listing.models[0]
    assert q4.quant == "Q4_K_M" and q4.size == 100
    assert q4.first_file.sha256 == hub_with_repos.repos["a/Popular-GGUF"].files["m-Q4_K_M.gguf"].sha256
    assert q4.first_file.revision == listing.commit


def test_split_files_are_grouped_as_one_model(fake_hub):  # noqa: F811
    fake_hub.add_repo("s/Split-GGUF", {f"big-Q8_0-0000{i}-of-00003.gguf": bytes([i]) * 10 for i in (2, 1, 3)}
                      | {"half-Q4_0-00001-of-00002.gguf": b"h"})
    listing = hub.list_files("s/Split-GGUF")
    big, half = listing.models
    assert big.name == "big-Q8_0.gguf" and big.is_split and big.complete and big.quant == "Q8_0"
    assert [p.filename for p in big.parts] == [f"big-Q8_0-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    assert big.size == 30
    assert not half.complete


def test_unsafe_file_names_from_the_hub_are_rejected(fake_hub):  # noqa: F811
    fake_hub.add_repo("e/Evil-GGUF", {"../../evil.gguf": b"e", "ok-Q4_0.gguf": b"o"})
    listing = hub.list_files("e/Evil-GGUF")
    assert [m.name for m in listing.models] == ["ok-Q4_0.gguf"]
    assert listing.rejected == ("../../evil.gguf",)


def test_missing_repo_says_so(fake_hub):  # noqa: F811
    with pytest.raises(hub.HubError, match="not found|does not exist"):
        hub.list_files("nobody/Nothing-GGUF")


def test_offline_mode_is_a_clear_error(fake_hub, monkeypatch):  # noqa: F811
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(hub.HubUnreachable, match="offline"):
        hub.search("x")


@pytest.mark.parametrize("name, quant", [
    ("Qwen3-8B-Q4_K_M.gguf", "Q4_K_M"), ("qwen2.5-7b-instruct-q4_k_m-00001-of-00002.gguf", "Q4_K_M"),
    ("gpt-oss-20b-mxfp4.gguf", "MXFP4"), ("SmolLM2-135M-Instruct.Q4_1.gguf", "Q4_1"),
    ("Qwen3-30B-A3B-UD-Q4_K_XL.gguf", "UD-Q4_K_XL"), ("model-IQ4_XS.gguf", "IQ4_XS"),
    ("gemma-3-4b-it-BF16.gguf", "BF16"), ("mmproj.gguf", None)])
def test_quant_is_read_from_the_file_name(name, quant):
    assert hub.quant_of(name) == quant


@pytest.mark.parametrize("name", ["../x.gguf", "/abs.gguf", "a//b.gguf", "a\\b.gguf", "./x.gguf", "C:x.gguf"])
def test_check_safe_filename_refuses_escapes(name):
    with pytest.raises(hub.UnsafeFileName):
        hub.check_safe_filename(name)


def test_check_safe_filename_accepts_subfolders():
    assert hub.check_safe_filename("Q4_K_M/model-00001-of-00002.gguf")


@pytest.mark.parametrize("repo_id", ["Qwen/Qwen3-0.6B-GGUF", "bartowski/Meta-Llama-3.1-8B-Instruct-GGUF",
                                     "lmstudio-community/gemma-3-4b-it-GGUF", "unsloth/Qwen3_30B.A3B", "gpt2"])
def test_real_repository_ids_and_revisions_pass_the_name_rules(repo_id):
    from core.models import safe_names

    assert safe_names.check_repo_id(repo_id) == repo_id
    for revision in ("main", "v1.0", "refs/pr/12", "a" * 40):
        assert safe_names.check_revision(revision) == revision


@pytest.mark.parametrize("repo_id", ["../x", "a/b/c", "a--b/c", "a/..b", "/a", "a/", "-a/b", "a/b.", "", "a\\b"])
def test_repository_ids_that_could_become_odd_folders_are_refused(repo_id):
    from core.models import safe_names

    with pytest.raises(hub.UnsafeFileName, match="Refusing the repository id"):
        safe_names.check_repo_id(repo_id)
