"""The local library: HF cache, app folder, LM Studio, Ollama (through manifests), user folders; delete."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from core.models.downloads.manager import HubCacheLayout
from core.models.library import LibrarySources, delete, ollama_name, scan
from tests.fixtures.tiny_gguf import write_tiny_model


@pytest.fixture
def tiny(tmp_path) -> bytes:
    return write_tiny_model(tmp_path / "source.gguf").read_bytes()


def _hf_place(cache: Path, repo_id: str, filename: str, data: bytes, commit: str = "a" * 40) -> Path:
    layout = HubCacheLayout(cache, repo_id)
    layout.prepare()
    sha = hashlib.sha256(data).hexdigest()
    part = layout.part(sha)
    part.write_bytes(data)
    return layout.place(part, sha, commit, filename, "main")


def _ollama(root: Path, name: str, tag: str, data: bytes, namespace=("registry.ollama.ai", "library")) -> Path:
    digest = hashlib.sha256(data).hexdigest()
    blob = root / "blobs" / f"sha256-{digest}"
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    manifest = root / "manifests" / Path(*namespace) / name / tag
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({"schemaVersion": 2, "layers": [
        {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}", "size": len(data)},
        {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:" + "0" * 64, "size": 1}]}))
    return blob


@pytest.fixture
def sources(tmp_path, tiny) -> LibrarySources:
    hf = tmp_path / "hf"
    _hf_place(hf, "org/Tiny-GGUF", "tiny-Q8_0.gguf", tiny)
    app = tmp_path / "app"
    (app / "sub").mkdir(parents=True)
    (app / "sub" / "mine.gguf").write_bytes(tiny)
    (app / "broken.gguf").write_bytes(b"GGUF" + b"\xff" * 20)
    (app / "notes.txt").write_text("not a model")
    lms = tmp_path / "lmstudio"
    (lms / "lmstudio-community" / "Tiny-GGUF").mkdir(parents=True)
    for i in (1, 2):
        (lms / "lmstudio-community" / "Tiny-GGUF" / f"tiny-0000{i}-of-00002.gguf").write_bytes(tiny)
    ollama = tmp_path / "ollama"
    _ollama(ollama, "tinyllama", "latest", tiny + b"\x00")
    _ollama(ollama, "someone/custom", "q4", tiny + b"\x01", namespace=("registry.ollama.ai",))
    user = tmp_path / "user"
    user.mkdir()
    (user / "extra.gguf").write_bytes(tiny)
    return LibrarySources(hf_cache=hf, app_dir=app, lmstudio_dirs=(lms,), ollama_dir=ollama, user_dirs=(user,))


def test_scan_finds_every_source_with_readable_names(sources):
    models = scan(sources)
    by_name = {(m.source, m.name): m for m in models}
    assert set(by_name) == {
        ("huggingface", "tiny-Q8_0.gguf"), ("app", "broken.gguf"), ("app", "sub/mine.gguf"),
        ("lmstudio", "lmstudio-community/Tiny-GGUF/tiny.gguf"), ("ollama", "tinyllama:latest"),
        ("ollama", "someone/custom:q4"), ("folder", "extra.gguf")}
    assert by_name[("huggingface", "tiny-Q8_0.gguf")].repo_id == "org/Tiny-GGUF"
    split = by_name[("lmstudio", "lmstudio-community/Tiny-GGUF/tiny.gguf")]
    assert len(split.parts) == 2 and split.path.name.endswith("00001-of-00002.gguf")
    assert split.size == 2 * split.parts[0].stat().st_size


def test_each_entry_is_inspected_and_errors_stay_on_their_entry(sources):
    models = {m.name: m for m in scan(sources)}
    assert models["broken.gguf"].info is None and "broken.gguf" in models["broken.gguf"].error
    good = [m for m in models.values() if m.name != "broken.gguf"]
    assert all(m.usable and m.info.architecture == "llama" for m in good)


def test_nothing_is_copied(sources, tmp_path):
    before = sorted(p for p in tmp_path.rglob("*"))
    scan(sources)
    assert sorted(p for p in tmp_path.rglob("*")) == before


def test_missing_sources_are_simply_empty(tmp_path):
    empty = LibrarySources(hf_cache=tmp_path / "a", app_dir=tmp_path / "b", lmstudio_dirs=(tmp_path / "c",),
                           ollama_dir=tmp_path / "d")
    assert scan(empty) == []


def test_ollama_manifest_without_blob_is_reported(tmp_path, tiny):
    root = tmp_path / "ollama"
    blob = _ollama(root, "gone", "latest", tiny)
    blob.unlink()
    (model,) = scan(LibrarySources(hf_cache=tmp_path / "x", app_dir=tmp_path / "y", lmstudio_dirs=(),
                                   ollama_dir=root))
    assert model.name == "gone:latest" and "missing" in model.error


def test_ollama_names():
    manifests = Path("/m")
    assert ollama_name(manifests, manifests / "registry.ollama.ai/library/llama3.2/3b") == "llama3.2:3b"
    assert ollama_name(manifests, manifests / "hf.co/bartowski/Qwen3-GGUF/Q4_K_M") == "hf.co/bartowski/Qwen3-GGUF:Q4_K_M"


def test_delete_from_the_hf_cache_keeps_the_cache_consistent(sources, tiny):
    from huggingface_hub import scan_cache_dir

    _hf_place(sources.hf_cache, "org/Tiny-GGUF", "same-bytes.gguf", tiny)  # shares the blob
    models = {m.name: m for m in scan(sources) if m.source == "huggingface"}
    removed = delete(models["tiny-Q8_0.gguf"], sources)
    assert len(removed) == 1, "the shared blob must stay"
    removed = delete(models["same-bytes.gguf"], sources)
    assert len(removed) == 2
    assert not scan_cache_dir(sources.hf_cache).warnings
    assert not [m for m in scan(sources) if m.source == "huggingface"]


def test_delete_ollama_and_folder_models(sources):
    models = {m.name: m for m in scan(sources)}
    delete(models["tinyllama:latest"], sources)
    delete(models["lmstudio-community/Tiny-GGUF/tiny.gguf"], sources)
    left = {m.name for m in scan(sources)}
    assert "tinyllama:latest" not in left and "lmstudio-community/Tiny-GGUF/tiny.gguf" not in left
    assert "someone/custom:q4" in left


def test_a_local_split_model_counts_every_part(tmp_path):
    from core.gguf.reader import read_model_info
    from tests.fixtures.fake_hub import write_split_stub
    from tests.fixtures.model_zoo import ZOO, zoo_model

    write_split_stub(ZOO["mistral-7b-v0.3"], tmp_path / "lms" / "org" / "Mistral-GGUF", 3)
    (model,) = scan(LibrarySources(hf_cache=tmp_path / "x", app_dir=tmp_path / "y", lmstudio_dirs=(tmp_path / "lms",),
                                   ollama_dir=tmp_path / "z"))
    whole = read_model_info(zoo_model("mistral-7b-v0.3"))
    assert model.usable and len(model.parts) == 3
    assert model.info.weights_bytes() == whole.weights_bytes()
