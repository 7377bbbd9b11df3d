"""The closed loop: llama.cpp's own allocations read from its load log, compared with the plan, kept per device;
the learned GPU margin and the speed factor that history gives; and a real load that reports its allocations."""
from __future__ import annotations

import pytest

from core.engine.client import EngineClient
from core.engine.native_log import allocations_from_log
from core.engine.protocol import AnswerStats, DeviceAllocation, LoadedModel, LoadSettings
from core.fit import calibration
from core.fit.choice import OffloadChoice
from core.fit.load_preparation import prepare_load

MiB = 1024 * 1024

# Lines as llama.cpp 0.3.36 prints them (src/llama-model.cpp, llama-kv-cache.cpp, llama-context.cpp).
LOAD_LOG = [
    "load_tensors:   CPU_Mapped model buffer size =    70.50 MiB\n",
    "load_tensors:        CUDA0 model buffer size =  3900.25 MiB\n",
    "llama_kv_cache:      CUDA0 KV buffer size =   512.00 MiB\n",
    "llama_context:  CUDA_Host  output buffer size =     0.58 MiB\n",
    "sched_reserve:      CUDA0 compute buffer size =   300.00 MiB\n",
    "sched_reserve:  CUDA_Host compute buffer size =    12.00 MiB\n",
    "sched_reserve:      CUDA0 compute buffer size =   304.00 MiB\n",   # a re-reserve replaces the buffer
    "llama_kv_cache: size =  512.00 MiB (  4096 cells,  32 layers,  1/1 seqs), K (f16):  256.00 MiB\n",
]


def test_allocations_are_read_per_device_from_llama_cpp_s_buffer_lines():
    gpu, host = allocations_from_log(LOAD_LOG)
    assert gpu == DeviceAllocation("CUDA0", model_bytes=round(3900.25 * MiB), kv_bytes=512 * MiB,
                                   compute_bytes=304 * MiB)
    assert host == DeviceAllocation("CPU", model_bytes=round(70.5 * MiB), compute_bytes=12 * MiB,
                                    other_bytes=round(0.58 * MiB))


def loaded(allocations, predicted_host=300 * MiB, predicted_gpu=None, gpu_bytes=None) -> LoadedModel:
    settings = LoadSettings("/m/model.gguf", predicted_host_bytes=predicted_host, predicted_gpu_bytes=predicted_gpu)
    return LoadedModel("/m/model.gguf", 4096, 0, 32, "CPU", 1.0, 500 * MiB, 250 * MiB, gpu_bytes, "model", settings,
                       allocations=tuple(allocations))


def test_a_load_is_compared_with_allocations_not_with_resident_memory():
    comparison = calibration.compare_load(loaded([DeviceAllocation("CPU", 280 * MiB, 15 * MiB, 5 * MiB)]))
    assert comparison.host.actual_bytes == 300 * MiB and comparison.host.difference_percent == 0.0
    assert comparison.host.in_use_bytes == 500 * MiB and comparison.gpu is None


def test_the_margin_is_learned_per_gpu_after_three_loads_and_reset_forgets_it():
    gpu_load = loaded(allocations_from_log(LOAD_LOG), predicted_gpu=4500 * MiB, gpu_bytes=5000 * MiB)
    calibration.record_load(gpu_load)
    calibration.record_load(gpu_load)
    assert calibration.learned_margin_bytes() is None
    assert calibration.effective_margin_bytes(1024 * MiB, use_learned=True) == 1024 * MiB
    calibration.record_load(gpu_load)
    # VRAM in use exceeded the prediction by 500 MiB: x1.25 + 128 MiB = 753 MiB, in 64 MiB steps -> 768 MiB
    assert calibration.learned_margin_bytes() == 768 * MiB
    assert calibration.effective_margin_bytes(1024 * MiB, use_learned=True) == 768 * MiB
    assert calibration.effective_margin_bytes(1024 * MiB, use_learned=False) == 1024 * MiB
    calibration.reset()
    assert calibration.learned_margin_bytes() is None and calibration.loads_recorded() == 0


def test_the_speed_factor_is_the_median_measured_over_predicted_per_placement():
    assert calibration.speed_factor(["CPU"]) == 1.0
    for measured in (40.0, 50.0, 45.0):
        calibration.record_speed(["CPU"], 100.0, measured)
    assert calibration.speed_factor(["CPU"]) == pytest.approx(0.45)
    assert calibration.speed_factor(["NVIDIA H200"]) == 1.0  # another placement learned nothing


def answer(tokens: int, rate: float, stop_reason: str = "stop") -> AnswerStats:
    return AnswerStats(prompt_tokens=20, completion_tokens=tokens, ttft_seconds=0.1, prompt_tokens_per_second=500.0,
                       tokens_per_second=rate, context_used=20 + tokens, context_size=4096, stop_reason=stop_reason,
                       reused_prefix_tokens=0, dropped_messages=0)


def test_an_answer_s_speed_is_kept_only_when_it_measures_something():
    assert not calibration.record_answer_speed(["CPU"], 100.0, answer(3, 10.0))            # a few tokens: noise
    assert not calibration.record_answer_speed(["CPU"], 100.0, answer(200, 10.0, "cancelled"))
    assert not calibration.record_answer_speed(["CPU"], None, answer(200, 10.0))           # nothing was predicted
    assert calibration.speed_factor(["CPU"]) == 1.0
    assert calibration.record_answer_speed(["CPU"], 100.0, answer(200, 60.0))
    assert calibration.speed_factor(["CPU"]) == pytest.approx(0.6)


def test_a_real_load_reports_llama_cpp_s_allocations_next_to_the_plan(smollm2):
    prepared = prepare_load(str(smollm2), OffloadChoice(context=1024))
    with EngineClient() as engine:
        model = engine.load(prepared.settings)
    host = next(a for a in model.allocations if a.device == "CPU")
    assert host.model_bytes > 50 * MiB and host.kv_bytes > 0 and host.compute_bytes > 0
    comparison = calibration.record_load(model)
    assert abs(comparison.host.difference_percent) < 5  # the plan matches llama.cpp's own figures
    assert calibration.loads_recorded() == 1
