"""Shared test set-up: an isolated LlamaDesk home per test and the real SmolLM2 model."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["tests.fixtures.rpc_server", "tests.fixtures.fake_hub"]

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_path() -> Path:
    """The real chat model fetched by the set-up (tools/dev.py); see ARCHITECTURE §5."""
    explicit = os.environ.get("LLAMADESK_TEST_MODEL")
    if explicit:
        return Path(explicit)
    import platformdirs

    return Path(platformdirs.user_cache_dir("llamadesk", appauthor=False)) / "test-models" / SMOLLM2_FILE


@pytest.fixture(autouse=True)
def llamadesk_home(tmp_path_factory, monkeypatch) -> Path:
    """Every test gets its own app folders, so no test sees the user's chats, settings or models."""
    home = tmp_path_factory.mktemp("llamadesk-home")
    monkeypatch.setenv("LLAMADESK_HOME", str(home))
    return home


NO_HUB = "http://127.0.0.1:9"  # nothing listens there: a request fails at once, never reaching the network


@pytest.fixture(autouse=True)
def hub_out_of_reach(tmp_path_factory, monkeypatch) -> None:
    """No test talks to the real Hugging Face, or sees the user's Hugging Face cache and login: the hub is a
    closed local port (the fake_hub fixture puts its server there instead) and the cache a fresh folder."""
    from tests.fixtures.fake_hub import point_huggingface_hub_at

    point_huggingface_hub_at(NO_HUB, str(tmp_path_factory.mktemp("hf-home")), monkeypatch)


@pytest.fixture(scope="session")
def smollm2() -> Path:
    path = smollm2_path()
    if not path.exists():
        pytest.fail(f"The SmolLM2 test model is missing at {path}: run the README's test command (make test), "
                    "which fetches it.")
    return path
