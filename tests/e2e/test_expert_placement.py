"""MoE experts kept in host memory while the rest of every layer sits on a GPU-like device (a local llama.cpp
RPC server, ARCHITECTURE §4): llama.cpp applies the overrides, its own buffers say so, and the model answers."""
from __future__ import annotations

import pytest

from core.engine.client import EngineClient
from core.engine.protocol import AnswerFinished, LoadSettings, SamplingSettings
from core.fit.estimate import GpuDevice, MemorySettings, estimate
from core.gguf.reader import read_model_info
from tests.fixtures.rpc_server import rpc_server  # noqa: F401  (the fixture)
from tests.fixtures.tiny_moe import write_tiny_moe

pytestmark = [pytest.mark.rpc]


@pytest.fixture(scope="module")
def tiny_moe(tmp_path_factory):
    return write_tiny_moe(tmp_path_factory.mktemp("moe") / "tiny-moe.gguf")


def _model_bytes(loaded, prefix: str) -> int:
    return sum(a.model_bytes for a in loaded.allocations if a.device.startswith(prefix))


def test_experts_of_the_first_layers_stay_on_the_host_and_the_model_answers(tiny_moe, rpc_server):  # noqa: F811
    info = read_model_info(tiny_moe)
    experts = sum(t.n_bytes for t in info.tensors if t.layer in (0, 1) and "_exps." in t.name)
    with EngineClient() as engine:
        loaded = engine.load(LoadSettings(str(tiny_moe), n_gpu_layers=-1, n_ctx=512, cpu_expert_layers=2,
                                          rpc_servers=(rpc_server.endpoint,)))
        assert loaded.settings.cpu_expert_layers == 2 and loaded.steps == ()
        finished = [event for event in engine.chat([{"role": "user", "content": "Say hello."}],
                                                   SamplingSettings(temperature=0.0, max_tokens=8))
                    if isinstance(event, AnswerFinished)][0]
        assert finished.stats.completion_tokens >= 1 and finished.stats.stop_reason in ("stop", "length")
    predicted = estimate(info, MemorySettings(n_gpu_layers=-1, n_ctx=512, cpu_expert_layers=2), [GpuDevice("RPC0", 1)])
    on_rpc, on_host = _model_bytes(loaded, "RPC"), _model_bytes(loaded, "CPU")
    assert on_host >= experts  # the two layers' experts (plus the input embeddings)
    assert abs(on_rpc - predicted.device("RPC0").weights_bytes) < 64 * 1024  # llama.cpp pads buffers a little
