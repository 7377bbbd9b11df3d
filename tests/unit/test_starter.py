from core.platform import locations
from core.models import starter


def test_the_starter_model_goes_into_an_empty_model_folder(tmp_path):
    source = tmp_path / "Starter.gguf"
    source.write_bytes(b"GGUF" + b"\0" * 100)
    placed = starter.install_starter_model(source)
    assert placed == locations.models_dir() / "Starter.gguf"
    assert placed.read_bytes() == source.read_bytes()
    assert starter.model_to_open_at_start(()) == placed


def test_a_folder_that_already_has_a_model_is_left_alone(tmp_path):
    locations.models_dir().mkdir(parents=True)
    (locations.models_dir() / "Mine.gguf").write_bytes(b"GGUF")
    source = tmp_path / "Starter.gguf"
    source.write_bytes(b"GGUF")
    assert starter.install_starter_model(source) is None
    assert [p.name for p in starter.installed_models()] == ["Mine.gguf"]


def test_the_most_recent_existing_model_is_reopened(tmp_path):
    kept = tmp_path / "kept.gguf"
    kept.write_bytes(b"GGUF")
    assert starter.model_to_open_at_start((str(tmp_path / "gone.gguf"), str(kept))) == kept


def test_nothing_to_open_on_a_bare_machine():
    assert starter.model_to_open_at_start(()) is None
