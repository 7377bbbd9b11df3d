"""The step-down ladder: more MoE experts on the CPU, fewer GPU layers, smaller context, quantized KV cache, CPU only."""
from core.engine.protocol import LoadSettings, ModelFacts
from core.engine.step_down import ladder


def test_the_rungs_come_in_the_documented_order_and_accumulate():
    rungs = ladder(LoadSettings("m.gguf", n_gpu_layers=-1, n_ctx=32768), ModelFacts(n_layers=31, n_ctx_train=8192))
    kinds = [rung.change.split(":")[0] for rung in rungs]
    assert kinds == ["fewer GPU layers", "fewer GPU layers", "smaller context", "smaller context",
                     "smaller context", "quantized KV cache", "CPU only"]
    layers = [rung.settings.n_gpu_layers for rung in rungs]
    assert layers[:2] == [24, 16] and layers[-1] == 0
    contexts = [rung.settings.n_ctx for rung in rungs]
    assert contexts[2:5] == [8192, 4096, 2048]          # first down to the trained context
    last = rungs[-1].settings
    assert (last.n_ctx, last.kv_type, last.flash_attn, last.n_gpu_layers) == (2048, "q8_0", True, 0)


def test_a_cpu_model_with_a_small_context_only_quantizes_the_cache():
    rungs = ladder(LoadSettings("m.gguf", n_ctx=2048), ModelFacts(30, 8192))
    assert [rung.settings.kv_type for rung in rungs] == ["q8_0"]


def test_unknown_facts_still_give_a_ladder():
    rungs = ladder(LoadSettings("m.gguf", n_gpu_layers=-1, n_ctx=8192), None)
    assert rungs[-1].settings.n_gpu_layers == 0
    assert [rung.settings.n_ctx for rung in rungs][:2] == [4096, 2048]


def test_an_already_quantized_cache_is_left_alone():
    rungs = ladder(LoadSettings("m.gguf", n_gpu_layers=10, n_ctx=4096, kv_type="q4_0"), ModelFacts(30, 8192))
    assert all(rung.settings.kv_type == "q4_0" for rung in rungs)
    assert rungs[-1].change.startswith("CPU only")


def test_a_moe_load_with_experts_on_the_host_moves_more_experts_before_dropping_layers():
    planned = LoadSettings("moe.gguf", n_gpu_layers=-1, n_ctx=8192, cpu_expert_layers=8)
    rungs = ladder(planned, ModelFacts(n_layers=24, n_ctx_train=131072))
    assert [rung.change.split(":")[0] for rung in rungs[:3]] == ["more experts on the CPU", "more experts on the CPU",
                                                                 "fewer GPU layers"]
    assert [(r.settings.cpu_expert_layers, r.settings.n_gpu_layers) for r in rungs[:3]] == [(16, -1), (24, -1),
                                                                                          (24, 18)]
    assert rungs[0].change == "more experts on the CPU: those of 8 -> 16 of 24 layers"
    assert all(rung.settings.cpu_expert_layers == 24 for rung in rungs[1:])


def test_a_load_without_experts_on_the_host_or_on_the_cpu_alone_moves_no_experts():
    for settings in (LoadSettings("m.gguf", n_gpu_layers=-1, n_ctx=4096),
                     LoadSettings("moe.gguf", n_gpu_layers=0, n_ctx=4096, cpu_expert_layers=8),
                     LoadSettings("moe.gguf", n_gpu_layers=-1, n_ctx=4096, cpu_expert_layers=24)):
        rungs = ladder(settings, ModelFacts(n_layers=24, n_ctx_train=8192))
        assert not any(rung.change.startswith("more experts") for rung in rungs)
