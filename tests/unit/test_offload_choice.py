"""The user's offload choice and the planner request it makes (shared by the offload panel and the load)."""
from __future__ import annotations

from dataclasses import replace

from core.gguf.reader import read_model_info
from core.machine.hardware import load_profile
from core.fit.choice import (OffloadChoice, capped_to_trained_context, choice_from_settings, context_steps,
                                 normalized, plan_choice, plan_request_for, settings_with_choice)
from core.fit.planner import CPU_ONLY, PlanRequest
from core.settings import Settings
from tests.fixtures.model_zoo import zoo_model

MiB = 1024 * 1024


def test_settings_make_the_same_request_as_the_choice_they_hold():
    settings = Settings(gpu_layers=12, kv_type="q8_0", context_length=8192, safety_margin_mib=512)
    request = plan_request_for(settings)
    assert request == PlanRequest(context=8192, kv_type="q8_0", flash_attn=True, n_gpu_layers=12,
                                  safety_margin_bytes=512 * MiB, allow_context_shrink=False)
    assert plan_request_for(settings, context=2048).context == 2048
    assert plan_request_for(Settings()).n_gpu_layers is None  # Auto: the planner chooses


def test_a_choice_round_trips_through_settings():
    choice = OffloadChoice(gpu_layers=-1, context=32768, kv_type="q4_0", flash_attn=True)
    assert choice_from_settings(settings_with_choice(Settings(), choice)) == choice
    experts = OffloadChoice(context=8192, cpu_expert_layers=6)
    saved = settings_with_choice(Settings(), experts)
    assert saved.cpu_expert_layers == 6 and choice_from_settings(saved) == experts
    assert plan_request_for(saved).cpu_expert_layers == 6  # the next load keeps the user's k


def test_a_quantized_cache_forces_flash_attention_and_unknown_types_fall_back():
    assert normalized(OffloadChoice(kv_type="q8_0", flash_attn=False)).flash_attn is True
    assert normalized(OffloadChoice(kv_type="bogus", flash_attn=False)) == OffloadChoice(flash_attn=False)


def test_a_choice_never_asks_for_more_context_than_the_model_was_trained_for():
    trained_8k = replace(read_model_info(zoo_model("llama3.1-8b")), context_length=8192)
    assert capped_to_trained_context(OffloadChoice(context=131072), trained_8k).context == 8192
    assert capped_to_trained_context(OffloadChoice(context=4096), trained_8k).context == 4096
    unknown = replace(trained_8k, context_length=0)  # a header without a trained length: the choice stands
    assert capped_to_trained_context(OffloadChoice(context=131072), unknown).context == 131072


def test_context_steps_double_from_512_and_end_at_the_trained_context():
    assert context_steps(8192) == (512, 1024, 2048, 4096, 8192)
    assert context_steps(131072)[-2:] == (65536, 131072)
    assert context_steps(6000) == (512, 1024, 2048, 4096, 6000)
    assert context_steps(100) == (512,)


def test_plan_choice_plans_exactly_what_was_chosen():
    info = read_model_info(zoo_model("llama3.1-8b"))
    plan = plan_choice(info, load_profile("laptop-8gb"), OffloadChoice(gpu_layers=0, context=20480))
    assert plan.verdict == CPU_ONLY
    assert plan.context == 20480


def test_the_expert_placement_choice_reaches_the_plan():
    info = read_model_info(zoo_model("gpt-oss-20b"))
    auto = OffloadChoice(context=8192)
    assert auto.cpu_expert_layers is None and auto.plan_request().cpu_expert_layers is None
    fixed = plan_choice(info, load_profile("desktop-24gb"), replace(auto, cpu_expert_layers=6))
    assert fixed.cpu_expert_layers == 6 and fixed.n_gpu_layers == fixed.n_layers
