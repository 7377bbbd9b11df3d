"""Vision projectors: which mmproj file pairs with which model (hub and library), and what the planner counts."""
from __future__ import annotations

from dataclasses import replace

from core.fit.choice import OffloadChoice, plan_for_load
from core.fit.projector import (fixed_image_tokens, image_compute_bytes, plan_with_projector, projector_info,
                                read_projector_info)
from core.gguf.reader import read_model_info
from core.machine.hardware import load_profile
from core.models.hub import RemoteFile, RepoListing, group_models
from core.models.library import LibrarySources, scan
from core.models.projectors import is_projector_name, pick_projector
from tests.fixtures.tiny_gguf import write_tiny_model
from tests.fixtures.tiny_vision import TinyProjector, write_tiny_projector, write_tiny_vision_model

GIB = 1 << 30


def test_a_lone_projector_pairs_with_every_model_beside_it():
    files = ["gemma-3-4b-it-Q4_K_M.gguf", "gemma-3-4b-it-Q8_0.gguf", "mmproj-model-f16.gguf"]
    assert pick_projector("gemma-3-4b-it-Q4_K_M.gguf", files) == "mmproj-model-f16.gguf"
    assert pick_projector("gemma-3-4b-it-Q8_0.gguf", files) == "mmproj-model-f16.gguf"


def test_the_projector_named_like_the_model_wins_then_f16():
    files = ["mmproj-Qwen2.5-VL-7B-Instruct-Q8_0.gguf", "mmproj-Qwen2.5-VL-7B-Instruct-f16.gguf",
             "mmproj-Qwen2.5-VL-3B-Instruct-f16.gguf", "mmproj-Qwen2.5-VL-7B-Instruct-f32.gguf"]
    assert pick_projector("Qwen2.5-VL-7B-Instruct-Q4_K_M.gguf", files) == "mmproj-Qwen2.5-VL-7B-Instruct-f16.gguf"
    assert pick_projector("Qwen2.5-VL-3B-Instruct-Q4_K_M.gguf", files) == "mmproj-Qwen2.5-VL-3B-Instruct-f16.gguf"


def test_no_projector_no_pair_and_a_projector_pairs_with_nothing():
    assert pick_projector("SmolLM2-135M-Instruct.Q4_1.gguf", ["SmolLM2-135M-Instruct.Q4_1.gguf"]) is None
    assert pick_projector("mmproj-f16.gguf", ["mmproj-f16.gguf", "mmproj-q8_0.gguf"]) is None
    assert is_projector_name("sub/mmproj-F16.gguf") and not is_projector_name("mmproj/model-Q4_K_M.gguf")


def test_a_hub_listing_pairs_each_model_with_its_projector():
    names = ["gemma-3-4b-it-Q4_K_M.gguf", "gemma-3-4b-it-Q8_0.gguf", "mmproj-model-f16.gguf"]
    models = group_models("ggml-org/gemma-3-4b-it-GGUF",
                          [RemoteFile("ggml-org/gemma-3-4b-it-GGUF", name, 100, None, "c" * 40) for name in names])
    listing = RepoListing("ggml-org/gemma-3-4b-it-GGUF", "c" * 40, False, models)
    chat_models = [model for model in listing.models if not model.is_projector]
    assert [listing.projector_for(model).name for model in chat_models] == ["mmproj-model-f16.gguf"] * 2
    text_only = RepoListing("x/y", "c" * 40, False, tuple(chat_models))
    assert text_only.projector_for(chat_models[0]) is None


def test_the_library_pairs_by_folder(tmp_path):
    vision = write_tiny_vision_model(tmp_path / "models" / "vision")
    (tmp_path / "models" / "text").mkdir()
    write_tiny_model(tmp_path / "models" / "text" / "plain-Q8_0.gguf")
    found = scan(LibrarySources(hf_cache=tmp_path / "none", app_dir=tmp_path / "models", lmstudio_dirs=(),
                                ollama_dir=tmp_path / "none"))
    pairs = {model.path.name: model.projector for model in found if not model.is_projector}
    assert pairs == {"tiny-vision-Q8_0.gguf": vision.projector, "plain-Q8_0.gguf": None}
    assert [model.path for model in found if model.is_projector] == [vision.projector]


def test_a_projector_header_gives_its_weights_and_its_image_tokens(tmp_path):
    shape = TinyProjector()
    info = read_projector_info(write_tiny_projector(tmp_path / "mmproj.gguf", shape))
    assert (info.projector_type, info.has_vision, info.image_size, info.patch_size) == ("mlp", True, 32, 8)
    assert info.weights_bytes == sum(t.n_bytes for t in _tensors(tmp_path / "mmproj.gguf"))
    assert fixed_image_tokens(info) == shape.image_tokens == 16


def test_image_tokens_of_published_projector_families():
    def facts(kind: str, image: int, patch: int, merge: int = 0):
        return projector_info({"general.architecture": "clip", "clip.projector_type": kind,
                               "clip.has_vision_encoder": True, "clip.vision.image_size": image,
                               "clip.vision.patch_size": patch, "clip.vision.projector.scale_factor": merge},
                              0, kind)
    assert fixed_image_tokens(facts("mlp", 336, 14)) == 576            # LLaVA-1.5
    assert fixed_image_tokens(facts("gemma3", 896, 14)) == 256         # Gemma 3: 64x64 patches pooled 4x4
    assert fixed_image_tokens(facts("qwen2vl_merger", 560, 14)) is None  # sized by each image


def test_without_flash_attention_the_encoder_needs_room_for_its_attention_scores(tmp_path):
    info = read_projector_info(write_tiny_projector(tmp_path / "mmproj.gguf"))
    positions = info.patches + 1
    assert image_compute_bytes(info, flash_attn=False) - image_compute_bytes(info) == \
        4 * 2 * info.n_head * positions * positions


def test_the_plan_counts_the_projector_on_the_gpu_that_gets_the_layers(tmp_path):
    vision = write_tiny_vision_model(tmp_path)
    model, projector = read_model_info(vision.model), read_projector_info(vision.projector)
    hardware = load_profile("desktop-24gb")
    plan, memory = plan_with_projector(model, projector, hardware, OffloadChoice(context=512))
    assert memory.on_gpu and plan.n_gpu_layers > 0
    assert memory.total_bytes == projector.weights_bytes + image_compute_bytes(projector)


def test_a_big_projector_leaves_less_room_for_layers_and_goes_to_the_host_with_them(tmp_path):
    vision = write_tiny_vision_model(tmp_path)
    model = read_model_info(vision.model)
    hardware = load_profile("desktop-24gb")
    gpu = hardware.gpus[0]
    alone = plan_for_load(model, hardware, OffloadChoice(context=512))
    assert alone.n_gpu_layers > 0
    huge = replace(read_projector_info(vision.projector), weights_bytes=gpu.free_bytes)
    plan, memory = plan_with_projector(model, huge, hardware, OffloadChoice(context=512))
    assert plan.n_gpu_layers == 0 and not memory.on_gpu


def _tensors(path):
    import gguf
    return [type("T", (), {"n_bytes": int(t.n_bytes)}) for t in gguf.GGUFReader(path).tensors]


def test_a_load_takes_a_projector_only_where_the_pairing_is_sure(tmp_path):
    from core.models.projectors import projector_path_for_load

    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("gemma-3-4b-it-Q4_K_M.gguf", "gemma-3-4b-it-Q8_0.gguf", "mmproj-model-f16.gguf"):
        (repo / name).write_bytes(b"")
    assert projector_path_for_load(repo / "gemma-3-4b-it-Q4_K_M.gguf") == str(repo / "mmproj-model-f16.gguf")
    mixed = tmp_path / "my-models"
    mixed.mkdir()
    for name in ("llama-3.2-3b-Q4_K_M.gguf", "qwen2.5-vl-7b-Q4_K_M.gguf", "mmproj-qwen2.5-vl-7b-f16.gguf"):
        (mixed / name).write_bytes(b"")
    assert projector_path_for_load(mixed / "qwen2.5-vl-7b-Q4_K_M.gguf") == str(mixed / "mmproj-qwen2.5-vl-7b-f16.gguf")
    assert projector_path_for_load(mixed / "llama-3.2-3b-Q4_K_M.gguf") is None, "another model's projector"


def test_a_projectors_figures_travel_as_json_and_damaged_ones_are_refused(tmp_path):
    import json

    import pytest

    from core.fit.projector import ProjectorError, ProjectorInfo
    from core.models.projectors import listed_projector_info

    info = read_projector_info(write_tiny_projector(tmp_path / "mmproj.gguf"))
    back = ProjectorInfo.from_json(json.loads(json.dumps(info.to_json())), info.source)
    assert back == info and back.from_header
    with pytest.raises(ProjectorError, match="damaged: image_size is -1"):
        ProjectorInfo.from_json({**info.to_json(), "image_size": -1}, "x")
    with pytest.raises(ProjectorError, match="must name exactly"):
        ProjectorInfo.from_json({"weights_bytes": 10}, "x")
    listed = listed_projector_info("mmproj-f16.gguf", 1000)
    assert not listed.from_header and image_compute_bytes(listed) == 0 and listed.weights_bytes == 1000


def test_the_cli_counts_the_same_projector_figure_for_a_hub_file_and_a_local_one(fake_hub, tmp_path, capsys):
    import argparse
    import json

    from core.cli import fit_cmd, models_cmd

    def run_cli(module, *argv: str) -> dict:
        parser = argparse.ArgumentParser(prog="llamadesk-cli")
        module.register(parser.add_subparsers(dest="command", required=True))
        args = parser.parse_args(argv)
        assert args.handler(args) == 0
        return json.loads(capsys.readouterr().out)

    vision = write_tiny_vision_model(tmp_path / "repo")
    fake_hub.add_repo("o/Vision-GGUF", {vision.model.name: vision.model.read_bytes(),
                                        vision.projector.name: vision.projector.read_bytes()})
    listed = run_cli(models_cmd, "files", "o/Vision-GGUF", "--hardware", "desktop-24gb", "--json")
    (row,) = [f for f in listed["files"] if f["name"] == vision.model.name]
    local = run_cli(fit_cmd, "fit", str(vision.model), "--hardware", "desktop-24gb", "--json")
    expected = read_projector_info(vision.projector).weights_bytes
    assert row["projector"]["weights_bytes"] == local["projector"]["weights_bytes"] == expected
    assert row["projector"]["image_buffer_counted"] and local["projector"]["image_buffer_counted"]
    assert (row["verdict"], row["n_gpu_layers"], row["context"]) == \
        (local["verdict"], local["n_gpu_layers"], local["context"])
