"""The planner's verdicts on the shipped hardware profiles, exact layer requests, speeds and explanations."""
from __future__ import annotations

from dataclasses import replace

import pytest

from core.gguf.reader import read_model_info
from core.machine.cpu import cpu_name
from core.machine.hardware import load_profile
from core.fit import calibration
from core.fit.planner import CPU_ONLY, FULL, TOO_LARGE, PlanError, PlanRequest, plan
from tests.fixtures.model_zoo import zoo_model


@pytest.fixture(scope="module")
def llama8b():
    return read_model_info(zoo_model("llama3.1-8b"))


@pytest.fixture(scope="module")
def mixtral():
    return read_model_info(zoo_model("mixtral-8x7b"))


def test_8b_on_an_8gb_laptop_fits_at_a_small_context_or_partly(llama8b):
    chosen = plan(llama8b, load_profile("laptop-8gb"), PlanRequest())
    assert chosen.verdict == FULL
    assert 4096 <= chosen.context < llama8b.context_length
    fixed = plan(llama8b, load_profile("laptop-8gb"), PlanRequest(context=32768, allow_context_shrink=False))
    assert fixed.verdict.startswith("Partial: ")
    assert 0 < fixed.n_gpu_layers < fixed.n_layers
    assert fixed.verdict == f"Partial: {fixed.n_gpu_layers} of {fixed.n_layers} layers on GPU"


def test_8b_runs_fully_on_a_24gb_gpu(llama8b):
    chosen = plan(llama8b, load_profile("desktop-24gb"), PlanRequest(context=8192))
    assert chosen.verdict == FULL
    assert chosen.n_gpu_layers == chosen.n_layers == llama8b.n_layers + 1
    gpu = chosen.devices[0]
    assert gpu.kind == "gpu" and gpu.total_bytes <= gpu.free_bytes - 1024 ** 3
    assert chosen.devices[-1].kind == "host"


def test_cpu_only_machine(llama8b):
    chosen = plan(llama8b, load_profile("cpu-only-16gb"), PlanRequest(context=8192))
    assert chosen.verdict == CPU_ONLY
    assert chosen.n_gpu_layers == 0 and [d.kind for d in chosen.devices] == ["host"]


def test_a_huge_model_is_too_large(mixtral):
    chosen = plan(mixtral, load_profile("cpu-only-16gb"))
    assert chosen.verdict == TOO_LARGE
    assert chosen.predicted_tokens_per_second is None
    assert "Does not fit" in chosen.explanation and "needs" in chosen.deciding_figure


def test_two_gpus_share_the_layers(mixtral):
    chosen = plan(mixtral, load_profile("dual-24gb"), PlanRequest(context=8192))
    assert chosen.verdict == FULL
    first, second = chosen.devices[0], chosen.devices[1]
    assert first.weights_bytes > 0 and second.weights_bytes > 0


def test_context_shrinks_before_layers_are_dropped(llama8b):
    request = PlanRequest(context=65536)
    chosen = plan(llama8b, load_profile("laptop-8gb"), request)
    assert chosen.verdict == FULL and chosen.context < 65536
    assert chosen.context % 256 == 0 and chosen.context >= request.min_context


def test_exact_gpu_layers_fit_or_not(llama8b):
    few = plan(llama8b, load_profile("laptop-8gb"), PlanRequest(context=8192, n_gpu_layers=10))
    assert few.n_gpu_layers == 10 and few.verdict == "Partial: 10 of 33 layers on GPU"
    too_many = plan(llama8b, load_profile("laptop-8gb"), PlanRequest(context=131072, n_gpu_layers=-1))
    assert too_many.n_gpu_layers == 33 and too_many.verdict == TOO_LARGE
    assert too_many.context == 131072


def test_exact_gpu_layers_without_a_gpu_stay_on_the_host(llama8b):
    chosen = plan(llama8b, load_profile("cpu-only-16gb"), PlanRequest(context=4096, n_gpu_layers=20))
    assert chosen.n_gpu_layers == 0 and chosen.verdict == CPU_ONLY


def test_partial_offload_is_slower_than_full(llama8b):
    laptop = load_profile("laptop-8gb")
    full = plan(llama8b, laptop, PlanRequest(context=4096))
    partial = plan(llama8b, laptop, PlanRequest(context=4096, n_gpu_layers=16))
    cpu = plan(llama8b, laptop, PlanRequest(context=4096, n_gpu_layers=0))
    speeds = [p.predicted_tokens_per_second for p in (full, partial, cpu)]
    assert speeds[0] > speeds[1] > speeds[2] > 0


def test_moe_reads_only_the_experts_in_use(mixtral, llama8b):
    box = load_profile("dual-24gb")
    moe = plan(mixtral, box, PlanRequest(context=4096)).predicted_tokens_per_second
    dense = plan(llama8b, box, PlanRequest(context=4096)).predicted_tokens_per_second
    ratio = mixtral.weights_bytes() / llama8b.weights_bytes()
    assert dense / moe < ratio / 2  # ~13 B active of 47 B: far faster than its size suggests


def test_bad_requests_are_refused(llama8b):
    with pytest.raises(PlanError):
        plan(llama8b, load_profile("laptop-8gb"), PlanRequest(context=0))
    with pytest.raises(PlanError, match="flash attention"):
        plan(llama8b, load_profile("laptop-8gb"), PlanRequest(kv_type="q8_0", flash_attn=False))


def test_plan_as_a_dict(llama8b):
    data = plan(llama8b, load_profile("laptop-8gb")).to_dict()
    for key in ("verdict", "n_gpu_layers", "n_layers", "context", "kv_type", "flash_attn",
                "predicted_tokens_per_second", "explanation", "devices"):
        assert key in data
    assert set(data["devices"][0]) == {"name", "kind", "free_bytes", "weights_bytes", "kv_bytes", "compute_bytes",
                                       "other_bytes", "total_bytes"}


# --- MoE expert placement -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gpt_oss():
    return read_model_info(zoo_model("gpt-oss-20b"))


def test_a_moe_model_too_big_for_the_gpu_keeps_some_experts_on_the_cpu(gpt_oss):
    chosen = plan(gpt_oss, load_profile("laptop-8gb"), PlanRequest(context=8192))
    layered = plan(gpt_oss, load_profile("laptop-8gb"), PlanRequest(context=8192, cpu_expert_layers=0))
    assert 0 < chosen.cpu_expert_layers < gpt_oss.n_layers
    assert chosen.n_gpu_layers == chosen.n_layers  # attention, KV and shared weights of every layer on the GPU
    assert chosen.predicted_tokens_per_second > layered.predicted_tokens_per_second
    assert chosen.verdict == f"Partial: experts of {chosen.cpu_expert_layers} of 24 layers on the CPU"
    assert chosen.placement.startswith(f"Experts of {chosen.cpu_expert_layers} of 24 layers on the CPU · ~")
    assert chosen.to_dict()["cpu_expert_layers"] == chosen.cpu_expert_layers
    gpu, host = chosen.devices
    assert gpu.fits and host.weights_bytes > layered.devices[-1].weights_bytes / 2


def test_each_expert_layer_on_the_cpu_moves_its_experts_and_slows_generation(gpt_oss):
    fewer, more = (plan(gpt_oss, load_profile("desktop-24gb"), PlanRequest(context=8192, cpu_expert_layers=k))
                   for k in (4, 8))
    experts = sum(t.n_bytes for t in gpt_oss.tensors if t.layer in (4, 5, 6, 7) and "_exps." in t.name)
    assert more.devices[0].weights_bytes == fewer.devices[0].weights_bytes - experts
    assert more.devices[-1].weights_bytes == fewer.devices[-1].weights_bytes + experts
    assert more.predicted_tokens_per_second < fewer.predicted_tokens_per_second


def test_a_dense_model_never_gets_expert_placement(llama8b):
    chosen = plan(llama8b, load_profile("laptop-8gb"), PlanRequest(context=32768, allow_context_shrink=False,
                                                                   cpu_expert_layers=10))
    assert chosen.cpu_expert_layers == 0 and chosen.verdict.startswith("Partial: ")


def test_a_model_that_fits_whole_keeps_its_experts_on_the_gpu(gpt_oss):
    chosen = plan(gpt_oss, load_profile("desktop-24gb"), PlanRequest(context=8192))
    assert chosen.verdict == FULL and chosen.cpu_expert_layers == 0
    assert chosen.placement.startswith("All layers on GPU")


# --- this machine's speed history -----------------------------------------------------------------------

def test_without_a_speed_history_the_prediction_is_the_speed_model_s_own(llama8b):
    chosen = plan(llama8b, load_profile("desktop-24gb"), PlanRequest(context=8192))
    assert chosen.predicted_tokens_per_second == round(chosen.uncalibrated_tokens_per_second, 1)
    assert chosen.placement_devices == ("NVIDIA GeForce RTX 4090",)  # the host keeps only the token embeddings


def test_a_recorded_speed_history_scales_the_next_plan_s_prediction_for_that_placement(llama8b):
    box = load_profile("desktop-24gb")
    before = plan(llama8b, box, PlanRequest(context=8192))
    for measured_share in (0.5, 0.6, 0.55):
        calibration.record_speed(before.placement_devices, before.uncalibrated_tokens_per_second,
                                 before.uncalibrated_tokens_per_second * measured_share)
    after = plan(llama8b, box, PlanRequest(context=8192))
    assert after.uncalibrated_tokens_per_second == before.uncalibrated_tokens_per_second
    assert after.predicted_tokens_per_second == pytest.approx(before.predicted_tokens_per_second * 0.55, abs=0.1)
    assert after.placement.endswith(f"~{after.predicted_tokens_per_second:.0f} tok/s")
    on_the_host = plan(llama8b, box, PlanRequest(context=8192, n_gpu_layers=0))
    assert on_the_host.placement_devices == ("CPU",)
    assert on_the_host.predicted_tokens_per_second == round(on_the_host.uncalibrated_tokens_per_second, 1)


def test_this_machine_s_host_speed_does_not_scale_a_plan_for_another_machine_s_profile(llama8b):
    profile = load_profile("cpu-only-16gb")
    this_machine = replace(profile, host=replace(profile.host, cpu_name=cpu_name()))
    plain = plan(llama8b, profile, PlanRequest(context=4096))
    assert plain.placement_devices == ("CPU",) and profile.host.cpu_name != cpu_name()
    for _ in range(3):
        calibration.record_speed(["CPU"], plain.uncalibrated_tokens_per_second,
                                 plain.uncalibrated_tokens_per_second * 2)
    assert plan(llama8b, profile, PlanRequest(context=4096)).predicted_tokens_per_second == \
        plain.predicted_tokens_per_second
    here = plan(llama8b, this_machine, PlanRequest(context=4096))
    assert here.predicted_tokens_per_second == pytest.approx(2 * here.uncalibrated_tokens_per_second, abs=0.1)


# --- workers: other computers' devices over llama.cpp RPC ------------------------------------------------

def _with_worker(profile: str, round_trip_s: float, free_gib: int = 24, address: str = "192.168.1.20:50052"):
    from core.machine import workers

    lender = workers.Worker(address, workers.PROTOCOL_VERSION,
                            (workers.WorkerDevice(0, free_gib * 2**30, free_gib * 2**30),),
                            workers.WorkerLink(round_trip_s, 100e6, 100e6))
    snapshot = workers.with_workers(load_profile(profile), [lender])
    # The worker's GPU speed, as a profile of that computer would give it (RPC does not tell it).
    gpus = tuple(replace(g, bandwidth_bytes_per_s=1e12) if g.is_worker else g for g in snapshot.gpus)
    return replace(snapshot, gpus=gpus)


def test_a_worker_takes_the_layers_this_computer_cannot_and_is_named(llama8b):
    chosen = plan(llama8b, _with_worker("laptop-8gb", 0.001), PlanRequest(context=32768, allow_context_shrink=False))
    local, lent, host = chosen.devices
    assert (local.kind, lent.kind, host.kind) == ("gpu", "worker", "host")
    assert (lent.address, local.address) == ("192.168.1.20:50052", None)
    assert chosen.verdict == FULL and lent.weights_bytes > local.weights_bytes > 0
    assert chosen.to_dict()["devices"][1]["address"] == "192.168.1.20:50052"
    assert chosen.placement_devices == (local.name, lent.name)
    assert chosen.explanation.endswith(" on 192.168.1.20:50052.") and "Across computers: " in chosen.explanation
    assert chosen.placement.split(" · ")[0].endswith("layers here, "
                                                     f"{chosen.n_layers - _here(chosen.placement)} on 192.168.1.20:50052")


def _here(placement: str) -> int:
    return int(placement.split(" layers here")[0])


def test_the_network_slows_the_predicted_speed(llama8b):
    request = PlanRequest(context=8192, allow_context_shrink=False)
    near = plan(llama8b, _with_worker("laptop-8gb", 0.0005), request)
    far = plan(llama8b, _with_worker("laptop-8gb", 0.020), request)
    assert near.n_gpu_layers == far.n_gpu_layers and near.devices[1].weights_bytes == far.devices[1].weights_bytes
    # Two crossings per token (there and back): 2 × 19.5 ms more per token than the near link.
    assert 1 / far.uncalibrated_tokens_per_second - 1 / near.uncalibrated_tokens_per_second == pytest.approx(
        2 * 0.0195, rel=0.01)


def test_crossings_count_each_worker_and_the_logits_coming_back(llama8b):
    from core.fit.estimate import HOST
    from core.fit.speed import ACTIVATION_BYTES, NetworkLink, network_seconds_per_token

    link = NetworkLink("10.0.0.5:50052", 0.001, 1e8)
    other = NetworkLink("10.0.0.6:50052", 0.002, None)
    hidden = llama8b.embedding_length * ACTIVATION_BYTES / 1e8
    logits = llama8b.vocab_size * ACTIVATION_BYTES / 1e8
    n = llama8b.n_layers
    assert network_seconds_per_token(llama8b, ["GPU0"] * (n + 1), {}) == 0
    middle = [HOST] * 10 + ["W"] * 10 + [HOST] * (n - 19)
    assert network_seconds_per_token(llama8b, middle, {"W": link}) == pytest.approx(2 * (0.001 + hidden))
    last = [HOST] * 10 + ["W"] * (n - 9)  # the worker holds the output layer: the logits come back over the link
    assert network_seconds_per_token(llama8b, last, {"W": link}) == pytest.approx(0.001 + hidden + 0.001 + logits)
    two = ["W"] * 16 + ["V"] * (n - 15)  # a hop between two workers passes through this computer: both links count
    assert network_seconds_per_token(llama8b, two, {"W": link, "V": other}) == pytest.approx(
        (0.001 + hidden) + (0.001 + hidden + 0.002) + 0.002)
