"""A vision model in the real engine: paired with its projector, loaded through libmtmd, shown an image, answering.

The tiny projector turns any image into 16 embeddings, so the prompt of a message with one image is 16 positions
longer than the same message without it: that is the proof that the image was encoded and read by the model.
"""
from __future__ import annotations

import pytest

from core.engine.client import EngineClient
from core.engine.errors import EngineError, EngineLoadError
from core.engine.protocol import AnswerFinished, LoadSettings, SamplingSettings
from core.fit.calibration import compare_load
from core.fit.choice import OffloadChoice
from core.fit.load_preparation import prepare_load
from core.models.library import LibrarySources, scan
from tests.fixtures.tiny_gguf import write_tiny_model
from tests.fixtures.tiny_vision import write_png, write_tiny_vision_model

GREEDY = SamplingSettings(temperature=0.0, max_tokens=8)


@pytest.fixture(scope="module")
def vision_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vision")
    files = write_tiny_vision_model(folder / "models")
    return files, write_png(folder / "photo.png", 40, 24), folder


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LLAMADESK_HOME", str(tmp_path_factory.mktemp("engine-home")))
        yield


@pytest.fixture(scope="module")
def engine(vision_files, home):
    files, _, folder = vision_files
    paired = [model for model in scan(LibrarySources(hf_cache=folder / "no-cache", app_dir=folder / "models",
                                                     lmstudio_dirs=(), ollama_dir=folder / "no-ollama"))
              if not model.is_projector]
    assert [model.projector for model in paired] == [files.projector]
    with EngineClient() as client:
        client.load(LoadSettings(str(paired[0].path), n_ctx=512, projector_path=str(paired[0].projector)))
        yield client


def _answer(engine, messages) -> AnswerFinished:
    events = list(engine.chat(messages, GREEDY))
    assert isinstance(events[-1], AnswerFinished)
    return events[-1]


def test_an_image_is_encoded_into_the_prompt_and_the_model_answers(engine, vision_files):
    files, photo, _ = vision_files
    text_only = _answer(engine, [{"role": "user", "content": "What is this?"}])
    with_image = _answer(engine, [{"role": "user", "content": "What is this?", "images": [str(photo)]}])
    assert with_image.stats.image_tokens == (files.shape.image_tokens,)
    # the image's 16 positions and the newline after its place (one token in this vocabulary)
    assert with_image.stats.prompt_tokens == text_only.stats.prompt_tokens + files.shape.image_tokens + 1
    assert with_image.stats.completion_tokens > 0
    assert "<__media__>" in with_image.stats.prompt


def test_the_loaded_model_reports_its_projector(engine, vision_files):
    files, _, _ = vision_files
    projector = engine.loaded.projector
    assert projector is not None and projector.path == str(files.projector)
    assert projector.device == "CPU"
    assert projector.weights_bytes > 0 and projector.compute_bytes > 0


def test_image_bytes_work_like_a_path_and_the_same_image_is_reused_from_the_cache(engine, vision_files):
    _, photo, _ = vision_files
    first = _answer(engine, [{"role": "user", "content": "Describe", "images": [photo.read_bytes()]}])
    again = _answer(engine, [{"role": "user", "content": "Describe", "images": [str(photo)]}])
    assert again.stats.prompt_tokens == first.stats.prompt_tokens
    assert again.stats.reused_prefix_tokens == first.stats.prompt_tokens - 1      # the image was not encoded again


def test_a_file_that_is_not_an_image_is_refused_with_a_sentence(engine, vision_files):
    _, _, folder = vision_files
    notes = folder / "notes.png"
    notes.write_text("these are notes, not a picture")
    with pytest.raises(EngineError, match="not an image this model can read"):
        list(engine.chat([{"role": "user", "content": "Look", "images": [str(notes)]}], GREEDY))
    assert _answer(engine, [{"role": "user", "content": "Still there?"}]).stats.completion_tokens > 0


def test_a_text_only_model_refuses_an_image_and_sends_nothing(vision_files, home, tmp_path):
    _, photo, _ = vision_files
    text_model = write_tiny_model(tmp_path / "text-only.gguf")
    with EngineClient() as client:
        client.load(LoadSettings(str(text_model), n_ctx=512))
        assert client.loaded.projector is None
        with pytest.raises(EngineError, match="cannot look at images"):
            list(client.chat([{"role": "user", "content": "Look", "images": [str(photo)]}], GREEDY))


def test_a_projector_for_another_model_fails_the_load_with_llama_cpp_s_reason(vision_files, home, tmp_path):
    files, _, _ = vision_files
    wider = write_tiny_model(tmp_path / "wider.gguf", n_embd=128)
    with EngineClient() as client, pytest.raises(EngineLoadError, match="could not be loaded with this model"):
        client.load(LoadSettings(str(wider), n_ctx=512, projector_path=str(files.projector)))


def _cli(*arguments, home):
    import json
    import os
    import subprocess
    import sys
    result = subprocess.run([sys.executable, "-m", "core.cli", "chat", *map(str, arguments)], capture_output=True,
                            text=True, timeout=120, env={**os.environ, "LLAMADESK_HOME": str(home)})
    return result.returncode, (json.loads(result.stdout) if result.returncode == 0 else None), result.stderr


def test_the_cli_attaches_an_image_with_the_projector_found_beside_the_model(vision_files, tmp_path):
    files, photo, _ = vision_files
    code, answer, _ = _cli(files.model, "--prompt", "What is this?", "--attach", photo, "--max-tokens", "4",
                           "--ctx", "512", "--json", home=tmp_path)
    assert code == 0
    assert answer["attachments"] == [{"name": "photo.png", "kind": "image", "tokens": 16, "used": "whole"}]


def test_the_cli_refuses_an_image_for_a_text_only_model_before_loading_it(vision_files, tmp_path):
    _, photo, _ = vision_files
    text_model = write_tiny_model(tmp_path / "text-only.gguf")
    code, _, errors = _cli(text_model, "--prompt", "Look", "--attach", photo, "--json", home=tmp_path)
    assert code != 0 and "text-only.gguf cannot look at images" in errors
    code, _, errors = _cli(text_model, "--prompt", "Look", "--attach", text_model, "--json", home=tmp_path)
    assert code != 0 and "text-only.gguf is not an image this model can read" in errors


def test_the_planned_load_compares_the_projector_s_prediction_with_what_llama_cpp_reported(vision_files, home):
    files, _, _ = vision_files
    prepared = prepare_load(str(files.model), OffloadChoice(context=512), projector_path=str(files.projector))
    with EngineClient() as client:
        loaded = client.load(prepared.settings)
    projector = compare_load(loaded).projector
    assert projector is not None and projector.label == "Projector (CPU)"
    assert projector.actual_bytes == loaded.projector.weights_bytes + loaded.projector.compute_bytes
    assert projector.predicted_bytes == prepared.settings.predicted_projector_bytes > 0
    print("projector predicted vs actual:", projector.sentence())
