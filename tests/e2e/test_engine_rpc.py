"""Layers offloaded to a GPU-like device: a local llama.cpp RPC server on the CPU (ARCHITECTURE §4)."""
from __future__ import annotations

import pytest

from core.engine.client import EngineClient
from core.engine.protocol import AnswerFinished, LoadSettings, SamplingSettings
from tests.fixtures.rpc_server import rpc_server  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.model, pytest.mark.rpc]


def test_layers_go_to_the_rpc_device_and_the_model_answers(smollm2, rpc_server):  # noqa: F811
    with EngineClient() as engine:
        loaded = engine.load(LoadSettings(str(smollm2), n_gpu_layers=12, n_ctx=2048,
                                          rpc_servers=(rpc_server.endpoint,)))
        assert (loaded.backend, loaded.n_gpu_layers, loaded.steps) == ("RPC", 12, ())
        finished = [event for event in engine.chat([{"role": "user", "content": "Say hello."}],
                                                   SamplingSettings(temperature=0.0, max_tokens=12))
                    if isinstance(event, AnswerFinished)][0]
        assert finished.text.strip()
