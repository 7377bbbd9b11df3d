"""The curated catalog: shipped file valid, refresh from the hub (cached, offline-safe), fit check."""
from __future__ import annotations

import json

import pytest

from core.models import catalog as cat
from core.machine.hardware import load_profile
from core.models.remote_headers import HeaderCache


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


def test_fit_check_plans_remote_files_from_their_headers(fake_hub, smollm2):  # noqa: F811
    fake_hub.add_repo("o/Smol-GGUF", {"smol-Q4_1.gguf": smollm2.read_bytes()})
    cache = HeaderCache()
    fits = cat.fit_files([("o/Smol-GGUF", "smol-Q4_1.gguf", ("smol-Q4_1.gguf",), "Q4_1", None),
                          ("o/Smol-GGUF", "absent.gguf", ("absent.gguf",), None, None)],
                         load_profile("laptop-8gb"), cache=cache)
    ok, missing = fits
    assert ok.plan is not None and ok.badge == "Runs fully on GPU"
    assert ok.tokens_per_second and ok.tokens_per_second > 0
    assert missing.plan is None and "not found" in missing.error
    cpu = cat.fit_file(ok.entries, load_profile("cpu-only-16gb"), cache=cache)
    assert cpu.verdict == "CPU only"


def test_a_split_model_is_planned_from_all_its_parts(fake_hub, tmp_path):  # noqa: F811
    from core.gguf.reader import read_model_info
    from tests.fixtures.fake_hub import FakeFile, header_and_size, write_split_stub
    from tests.fixtures.model_zoo import ZOO, zoo_model

    model = ZOO["mistral-7b-v0.3"]
    parts = write_split_stub(model, tmp_path / "split", 3)
    fake_hub.add_repo("o/Split-GGUF", {p.name: FakeFile.virtual(*header_and_size(p)) for p in parts})
    names = tuple(p.name for p in parts)
    (fit,) = cat.fit_files([("o/Split-GGUF", names[0], names, "Q4_K_M", None)], load_profile("desktop-24gb"))
    whole = read_model_info(zoo_model(model.name))
    assert fit.plan is not None, fit.error
    assert len(fit.entries) == 3
    combined_weights = sum(t.n_bytes for e in fit.entries[1:] for t in e.part_tensors())
    first = HeaderCache().model_info(fit.entries[0])
    assert first.weights_bytes() + combined_weights == whole.weights_bytes()
    single = cat.fit_file(HeaderCache().get("o/Split-GGUF", names[0]), load_profile("desktop-24gb"))
    split_weights = sum(d.weights_bytes for d in fit.plan.devices)
    assert split_weights > sum(d.weights_bytes for d in single.devices), "later parts' weights must count"
    assert abs(split_weights - whole.weights_bytes()) <= 0.01 * whole.weights_bytes()


@pytest.mark.model
def test_exact_figures_from_the_remote_header_match_the_real_file(fake_hub, smollm2):  # noqa: F811
    from core.fit.dry_run import dry_run
    from core.fit.estimate import MemorySettings

    fake_hub.add_repo("o/Smol-GGUF", {"smol-Q4_1.gguf": smollm2.read_bytes()})
    entry = HeaderCache().get("o/Smol-GGUF", "smol-Q4_1.gguf")
    settings = MemorySettings(n_ctx=2048)
    remote = cat.exact_figures(entry, settings)
    local = dry_run(smollm2, settings)
    assert remote.host.total_bytes == local.host.total_bytes
    assert remote.n_ctx == local.n_ctx
