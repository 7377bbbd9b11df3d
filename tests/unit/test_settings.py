import json
from dataclasses import replace

from core import settings as store
from core.settings import MAX_RECENT_MODELS, Settings


def test_a_fresh_install_has_defaults():
    assert store.load() == Settings()


def test_settings_survive_a_save_and_load():
    saved = Settings(system_prompt="Be brief.", context_length=8192).with_recent_model("/models/a.gguf")
    store.save(saved)
    assert store.load() == saved


def test_recent_models_are_most_recent_first_without_duplicates_and_capped():
    settings = Settings()
    for index in range(MAX_RECENT_MODELS + 3):
        settings = settings.with_recent_model(f"/m/{index}.gguf")
    settings = settings.with_recent_model("/m/5.gguf")
    assert settings.recent_models[0] == "/m/5.gguf"
    assert len(settings.recent_models) == MAX_RECENT_MODELS
    assert len(set(settings.recent_models)) == MAX_RECENT_MODELS


def test_a_damaged_file_falls_back_to_defaults_and_is_kept_aside():
    path = store.settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{ not json")
    assert store.load() == Settings()
    assert path.with_suffix(".json.broken").exists()


def test_invalid_values_fall_back_one_by_one():
    path = store.settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"schema": 1, "values": {
        "context_length": -5, "threads": "many", "system_prompt": "Kept.", "recent_models": [1, 2]}}))
    loaded = store.load()
    assert loaded.system_prompt == "Kept."
    assert loaded.context_length == Settings().context_length
    assert loaded.threads == Settings().threads
    assert loaded.recent_models == ()


def test_saving_leaves_no_temporary_files():
    store.save(Settings())
    store.save(Settings(system_prompt="again"))
    assert sorted(p.name for p in store.settings_path().parent.iterdir()) == ["settings.json"]


def write_settings_file(document: dict) -> None:
    path = store.settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))


def test_every_field_survives_a_save_and_load():
    saved = Settings(recent_models=("/m/a.gguf",), system_prompt="Terse.", context_length=16384, threads=6,
                     model_folders=("/models", "/mnt/gguf"), gpu_layers=20, kv_type="q8_0", flash_attn=True,
                     safety_margin_mib=512, theme="dark", cpu_expert_layers=6)
    store.save(saved)
    assert store.load() == saved
    store.save(replace(saved, gpu_layers=None, kv_type="f16", flash_attn=False, theme="light", cpu_expert_layers=None))
    assert store.load().gpu_layers is None and store.load().cpu_expert_layers is None
    assert store.load().flash_attn is False


def test_the_new_fields_have_the_planner_s_defaults():
    settings = Settings()
    assert settings.gpu_layers is None  # Auto
    assert (settings.kv_type, settings.flash_attn, settings.theme) == ("f16", True, "system")
    assert settings.safety_margin_bytes == 1024 * 1024 * 1024


def test_a_version_1_file_migrates_keeping_its_values():
    write_settings_file({"schema": 1, "values": {
        "recent_models": ["/m/x.gguf"], "system_prompt": "Old prompt.", "context_length": 2048, "threads": 3,
        "model_folders": ["/old/models"]}})
    loaded = store.load()
    assert loaded == Settings(recent_models=("/m/x.gguf",), system_prompt="Old prompt.", context_length=2048,
                              threads=3, model_folders=("/old/models",))
    store.save(loaded)
    assert json.loads(store.settings_path().read_text())["schema"] == store.SCHEMA_VERSION == 2


def test_a_file_without_a_schema_number_is_read_as_version_1():
    write_settings_file({"values": {"threads": 5}})
    assert store.load().threads == 5


def test_out_of_range_offload_and_theme_values_fall_back_one_by_one():
    write_settings_file({"schema": 2, "values": {
        "gpu_layers": -7, "kv_type": "q2_k", "safety_margin_mib": -1, "theme": "purple", "flash_attn": "yes",
        "cpu_expert_layers": -1, "threads": 4}})
    loaded = store.load()
    defaults = Settings()
    assert (loaded.gpu_layers, loaded.kv_type, loaded.safety_margin_mib, loaded.theme, loaded.flash_attn,
            loaded.cpu_expert_layers) == (defaults.gpu_layers, defaults.kv_type, defaults.safety_margin_mib,
                                          defaults.theme, defaults.flash_attn, defaults.cpu_expert_layers)
    assert loaded.threads == 4


def test_all_layers_and_a_manual_count_are_kept():
    for layers in (-1, 0, 33):
        write_settings_file({"schema": 2, "values": {"gpu_layers": layers}})
        assert store.load().gpu_layers == layers


def test_the_experts_kept_on_the_cpu_persist_within_their_declared_range():
    low, high = store.LIMITS["cpu_expert_layers"]
    for experts in (low, 12, high):
        write_settings_file({"schema": 2, "values": {"cpu_expert_layers": experts}})
        assert store.load().cpu_expert_layers == experts
    write_settings_file({"schema": 2, "values": {"cpu_expert_layers": high + 1}})
    assert store.load().cpu_expert_layers is None  # Auto


def test_a_quantized_kv_cache_turns_flash_attention_back_on():
    write_settings_file({"schema": 2, "values": {"kv_type": "q4_0", "flash_attn": False}})
    loaded = store.load()
    assert (loaded.kv_type, loaded.flash_attn) == ("q4_0", True)


def test_remote_endpoints_are_saved_and_a_bad_one_falls_back_to_none():
    office = store.RemoteEndpoint("http://192.168.1.30:8080", "k3y", "Office PC")
    store.save(store.Settings(remote_endpoints=(office, store.RemoteEndpoint("http://localhost:11434/v1"))))
    loaded = store.load().remote_endpoints
    assert loaded == (office, store.RemoteEndpoint("http://localhost:11434/v1", "", ""))
    assert (loaded[0].label, loaded[1].label) == ("Office PC", "http://localhost:11434/v1")
    text = store.settings_path().read_text().replace("http://192.168.1.30:8080", "ftp://nowhere")
    store.settings_path().write_text(text)
    assert store.load().remote_endpoints == ()
