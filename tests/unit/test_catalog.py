"""The curated catalog: shipped file valid, refresh from the hub (cached, offline-safe)."""
from __future__ import annotations

import json
from dataclasses import replace

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


# -- plan inputs ------------------------------------------------------------------------------------------------------
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from core.gguf.reader import read_model_info  # noqa: E402
from core.machine.hardware import load_profile  # noqa: E402
from core.models.fit_check import FileRef, FitConditions, check_file  # noqa: E402
from core.models.plan_inputs import PlanInputs  # noqa: E402
from tests.fixtures.fake_hub import FakeFile, header_and_size  # noqa: E402
from tests.fixtures.model_zoo import zoo_model  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import catalog_plan_inputs as tool  # noqa: E402


def test_plan_inputs_give_back_the_tensor_table_and_figures_the_planner_reads():
    for name in ("qwen3-30b-a3b", "gemma3-4b", "mamba-2.8b", "gpt-oss-20b"):
        info = read_model_info(zoo_model(name))
        inputs = PlanInputs(json.loads(json.dumps(PlanInputs.of(info).to_json())))
        back = inputs.model_info("o/r/f.gguf")
        assert [(t.name, t.ggml_type, t.shape, t.n_bytes) for t in back.tensors] == \
               [(t.name, t.ggml_type, t.shape, t.n_bytes) for t in info.tensors]
        assert (back.n_layers, back.head_count_kv, back.sliding_window, back.expert_used_count, back.parameter_count) \
            == (info.n_layers, info.head_count_kv, info.sliding_window, info.expert_used_count, info.parameter_count)
        assert len(json.dumps(inputs.to_json())) < 4000


def test_shipped_plan_inputs_say_where_they_come_from_and_plan_offline():
    catalog = cat.load_catalog(use_refresh_cache=False)
    assert "model_zoo" in catalog.plan_inputs_source
    carried = [(m, f) for m, f in catalog.files() if f.plan_inputs is not None]
    assert len(carried) >= 10
    laptop = FitConditions(load_profile("laptop-8gb"))
    refs = {ref.filename: ref for ref in cat.file_refs(catalog)}
    for model, f in carried:
        assert f.plan_inputs_source and "model_zoo" in f.plan_inputs_source
        fit = check_file(refs[f.filename], laptop)  # the network is closed in tests: only plan inputs can do this
        assert fit.plan is not None, (model.id, fit.error)


def test_the_tool_fills_plan_inputs_from_hub_headers_and_the_refresh_replaces_them(fake_hub, small_catalog,
                                                                                 tmp_path):  # noqa: F811
    header, size = header_and_size(zoo_model("llama3.2-1b"))
    fake_hub.add_repo("o/X-GGUF", {"x-Q4_0.gguf": FakeFile.virtual(header, size)})
    target = tmp_path / "catalog.json"
    target.write_text(small_catalog.read_text())
    assert tool.main(["--catalog", str(target), "--only", "o/X-GGUF/x-Q4_0.gguf"]) == 0
    written = cat.load_catalog(target, use_refresh_cache=False).find("x").files[1]
    assert written.plan_inputs_source == "hub header of o/X-GGUF/x-Q4_0.gguf"
    assert written.plan_inputs.model_info("x").n_layers == 16
    assert '"plan_inputs": {"format":1' in target.read_text()  # one line per file: the catalog stays readable

    fresh = cat.refresh(cat.load_catalog(small_catalog), force=True).find("x").files[0]
    assert fresh.plan_inputs is not None and fresh.plan_inputs_source.startswith("hub header, sha256 ")
    requests = len(fake_hub.requests)
    again = cat.refresh(cat.load_catalog(small_catalog), force=True).find("x").files[0]
    assert again.plan_inputs == fresh.plan_inputs
    assert not [r for r in fake_hub.requests[requests:] if "/cdn/" in r.path], "same SHA-256: no header read again"


@pytest.mark.parametrize("change, named", [
    ({"repo": "o/../../etc"}, "o/../../etc"),
    ({"revision": "../../outside"}, "../../outside"),
    ({"files": [{"file": "x-Q4_0.gguf", "approx_size": 10, "sha256": "../../not-a-digest"}]}, "not-a-digest"),
])
def test_a_catalog_naming_paths_outside_the_cache_is_refused_with_the_name(change, named):
    with pytest.raises(cat.CatalogError) as refused:
        cat.parse_catalog(_minimal(**change))
    assert named in str(refused.value)


def test_a_cached_refresh_with_a_forged_commit_is_ignored(tmp_path):
    catalog = cat.parse_catalog(_minimal())
    forged = {"o/X-GGUF": {"commit": "../../../tmp/escaped", "fetched_at": 1.0,
                           "files": [{"file": "x-Q8_0.gguf", "size": 20}]}}
    assert cat._apply_refresh(catalog, forged).find("x").files == catalog.find("x").files


# -- vision models: a catalog entry names its projector ------------------------------------------------------------------
VISION = "o/Vision-GGUF"


@pytest.fixture
def vision_catalog(tmp_path, fake_hub):  # noqa: F811
    """A catalog naming a vision model and its projector (no figures yet), both served by the fake hub."""
    from tests.fixtures.tiny_vision import write_tiny_vision_model

    vision = write_tiny_vision_model(tmp_path / "repo")
    fake_hub.add_repo(VISION, {vision.model.name: vision.model.read_bytes(),
                               vision.projector.name: vision.projector.read_bytes()})
    data = _minimal(repo=VISION, files=[{"file": vision.model.name, "approx_size": 10}],
                    projector={"file": vision.projector.name, "approx_size": 10})
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(data))
    return path, vision


def test_a_catalog_vision_model_names_its_projector_and_its_files_carry_it():
    sha = "a" * 64
    catalog = cat.parse_catalog(_minimal(projector={"file": "mmproj-x-f16.gguf", "size": 5, "sha256": sha}))
    projector = catalog.find("x").projector
    assert (projector.filename, projector.size, projector.size_is_exact, projector.sha256) == \
        ("mmproj-x-f16.gguf", 5, True, sha)
    (ref,) = cat.file_refs(catalog)
    assert (ref.projector.filename, ref.projector.repo_id, ref.projector.sha256, ref.projector.size) == \
        ("mmproj-x-f16.gguf", "o/X-GGUF", sha, 5)


@pytest.mark.parametrize("projector, message", [
    ({"file": "x-f16.gguf"}, "not a projector"),
    ({"file": "../mmproj.gguf"}, "outside the model folder"),
    ({"file": "mmproj-x.gguf", "size": 0}, "positive"),
    ({"file": "mmproj-x.gguf", "info": {"weights_bytes": 1}}, "projector figures of mmproj-x.gguf are damaged"),
    ("mmproj-x.gguf", "must be an object"),
])
def test_a_bad_projector_entry_is_refused_with_a_reason(projector, message):
    with pytest.raises(cat.CatalogError, match=message):
        cat.parse_catalog(_minimal(projector=projector))


def test_the_tool_precomputes_the_projectors_figures_and_the_catalog_plans_offline_as_from_the_hub(
        vision_catalog, fake_hub):  # noqa: F811
    path, vision = vision_catalog
    model_key, projector_key = f"{VISION}/{vision.model.name}", f"{VISION}/{vision.projector.name}"
    assert tool.main(["--catalog", str(path), "--only", model_key, "--only", projector_key]) == 0
    catalog = cat.load_catalog(path, use_refresh_cache=False)
    projector = catalog.find("x").projector
    assert projector.info.weights_bytes > 0 and projector.info_source == f"hub header of {projector_key}"
    (ref,) = cat.file_refs(catalog)
    desktop = FitConditions(load_profile("desktop-24gb"))
    requests = len(fake_hub.requests)
    offline = check_file(ref, desktop)
    assert len(fake_hub.requests) == requests, "plan inputs and projector figures: nothing asked of the hub"
    from_hub = check_file(FileRef(ref.filename, VISION, parts=ref.parts,
                                  projector=replace(ref.projector, info=None)), desktop)
    assert offline.plan == from_hub.plan and offline.projector.info.image_size == 32


def test_the_tool_reads_a_projectors_figures_from_a_local_copy(vision_catalog):
    path, vision = vision_catalog
    assert tool.main(["--catalog", str(path), "--file", f"{VISION}/{vision.projector.name}={vision.projector}"]) == 0
    projector = cat.load_catalog(path, use_refresh_cache=False).find("x").projector
    assert projector.info_source == f"the header of a local copy ({vision.projector.name})"
    assert projector.info.n_layers == vision.shape.n_layers


def test_refresh_takes_the_projectors_exact_size_and_sha256_and_keeps_its_figures(vision_catalog, tmp_path):
    from core.fit.projector import read_projector_info

    path, vision = vision_catalog
    document = json.loads(path.read_text())
    document["models"][0]["projector"]["info"] = read_projector_info(vision.projector).to_json()
    path.write_text(json.dumps(document))
    fresh = cat.refresh(cat.load_catalog(path, use_refresh_cache=False), force=True).find("x").projector
    assert fresh.size == vision.projector.stat().st_size and fresh.size_is_exact and len(fresh.sha256) == 64
    assert fresh.info is not None, "no shipped SHA-256 to disagree with: the shipped figures stay"
