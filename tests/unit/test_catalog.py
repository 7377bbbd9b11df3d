"""The curated catalog: shipped file valid, refresh from the hub (cached, offline-safe)."""
from __future__ import annotations

import json

import pytest

from core.models import catalog as cat


def test_shipped_catalog_is_valid_and_broad():
    catalog = cat.load_catalog(use_refresh_cache=False)
    assert catalog.schema == 1
    assert len(catalog.models) >= 25
    families = {m.family for m in catalog.models}
    assert {"SmolLM2", "Qwen3", "Llama 3", "Gemma 3", "Phi-4", "Mistral", "DeepSeek-R1", "gpt-oss"} <= families
    assert any(f.parts for _, f in catalog.files()), "the catalog should show a split model"
    for model, f in catalog.files():
        assert f.quant and f.size and f.filename.endswith(".gguf"), (model.id, f)


def _minimal(**model_changes) -> dict:
    model = {"id": "x", "name": "X", "family": "F", "parameters": "1B", "repo": "o/X-GGUF", "license": "mit",
             "description": "d", "files": [{"file": "x-Q4_0.gguf", "approx_size": 10}]}
    model.update(model_changes)
    return {"schema": 1, "models": [model]}


@pytest.mark.parametrize("data, message", [
    ({"schema": 2, "models": []}, "schema 2 is not supported"),
    (_minimal(repo="no-slash"), "owner/name"),
    (_minimal(files=[{"file": "../x.gguf"}]), "outside the model folder"),
    (_minimal(files=[{"file": "x.bin"}]), "not a .gguf"),
    (_minimal(files=[{"file": "x.gguf", "size": -1}]), "positive"),
    (_minimal(name=""), "'name' must be a non-empty string"),
    ({"schema": 1, "models": [_minimal()["models"][0]] * 2}, "unique"),
])
def test_bad_catalogs_are_refused_with_a_reason(data, message):
    with pytest.raises(cat.CatalogError, match=message):
        cat.parse_catalog(data)


def test_unreadable_catalog_file(tmp_path):
    bad = tmp_path / "catalog.json"
    bad.write_text("{nope")
    with pytest.raises(cat.CatalogError, match="not valid JSON"):
        cat.load_catalog(bad)


@pytest.fixture
def small_catalog(tmp_path):
    data = _minimal(files=[{"file": "x-Q8_0.gguf", "approx_size": 10}, {"file": "x-Q4_0.gguf", "approx_size": 10}])
    data["models"].append({**data["models"][0], "id": "y", "repo": "o/Missing-GGUF"})
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(data))
    return path


def test_refresh_takes_sizes_sha256_and_splits_from_the_hub_and_works_offline_after(fake_hub, small_catalog,
                                                                                   monkeypatch, smollm2):  # noqa: F811
    data = smollm2.read_bytes()[:1000]
    fake_hub.add_repo("o/X-GGUF", {"x-Q4_0.gguf": data, "x-Q8_0.gguf": data + b"8", "x-Q6_K.gguf": data,
                                   "x-F16-00001-of-00002.gguf": data, "x-F16-00002-of-00002.gguf": data,
                                   "mmproj-x-F16.gguf": data})
    fresh = cat.refresh(cat.load_catalog(small_catalog))
    x = fresh.find("x")
    assert [f.filename for f in x.files] == ["x-Q8_0.gguf", "x-Q4_0.gguf", "x-F16-00001-of-00002.gguf",
                                             "x-Q6_K.gguf"]
    assert x.files[0].size == 1001 and x.files[0].size_is_exact and len(x.files[0].sha256) == 64
    assert x.files[2].parts == ("x-F16-00001-of-00002.gguf", "x-F16-00002-of-00002.gguf")
    assert fresh.find("y").files[0].size_is_exact is False, "a repo the hub lacks keeps the shipped data"

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    requests = len(fake_hub.requests)
    offline = cat.refresh(cat.load_catalog(small_catalog))
    assert offline.find("x").files == x.files
    assert len(fake_hub.requests) == requests
