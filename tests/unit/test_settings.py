import json

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
