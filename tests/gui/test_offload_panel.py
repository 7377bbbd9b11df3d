"""The offload panel (offscreen): the verdict, figures and device bars follow every control before a reload."""
from __future__ import annotations

import threading

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractButton, QComboBox, QSlider, QSpinBox

from core.gguf.reader import read_model_info
from core.machine.hardware import load_profile
from core.fit.choice import OffloadChoice
from core.fit.planner import CPU_ONLY, TOO_LARGE
from desktop.models import offload_panel
from desktop.models.offload_panel import OffloadDialog, OffloadPanel
from tests.fixtures.model_zoo import zoo_model

PARTIAL_CONTEXT = 20480  # on an 8 GB laptop GPU, Llama 3.1 8B Q4_K_M then fits only in part
TIMEOUT_MS = 5000


@pytest.fixture(scope="module")
def llama8b():
    return read_model_info(zoo_model("llama3.1-8b"))


@pytest.fixture(scope="module")
def laptop():
    return load_profile("laptop-8gb")


@pytest.fixture
def panel(qtbot):
    widget = OffloadPanel(debounce_ms=5)
    qtbot.addWidget(widget)
    widget.resize(600, 680)
    widget.show()
    return widget


def show(qtbot, panel, model, hardware, choice):
    with qtbot.waitSignal(panel.planned, timeout=TIMEOUT_MS) as signal:
        panel.show_for(model, hardware, choice)
    return signal.args[0]


def change(qtbot, panel, action):
    """Do `action` and return the plan the panel shows afterwards."""
    with qtbot.waitSignal(panel.planned, timeout=TIMEOUT_MS) as signal:
        action()
    return signal.args[0]


def gpu_part(panel, name, section=0):
    return next(part.bytes for part in panel.sections[section].bar.parts if part.name == name)


def test_auto_plans_a_partial_offload_and_shows_it(qtbot, panel, llama8b, laptop):
    plan = show(qtbot, panel, llama8b, laptop, OffloadChoice(context=PARTIAL_CONTEXT))
    assert plan.verdict.startswith("Partial: ")
    assert panel.verdict.text() == plan.verdict
    assert panel.verdict.property("verdict") == "partial"
    assert panel.auto_button.isChecked()
    assert panel.layers_slider.maximum() == 33
    assert panel.layers_slider.value() == plan.n_gpu_layers  # the slider shows what Auto chose
    assert "chosen by the planner" in panel.layers_value.text()
    assert panel.figure.text() == plan.deciding_figure
    assert "tokens/s" in panel.speed.text()
    assert [s.title.text() for s in panel.sections] == ["GPU 0 · NVIDIA GeForce RTX 4060 Laptop GPU", "Host RAM"]
    assert gpu_part(panel, "Weights") > 0 and gpu_part(panel, "Weights", section=1) > 0


def test_moving_the_slider_changes_the_verdict_and_the_device_bars(qtbot, panel, llama8b, laptop):
    show(qtbot, panel, llama8b, laptop, OffloadChoice(context=PARTIAL_CONTEXT))
    host_weights_partial = gpu_part(panel, "Weights", section=1)

    plan = change(qtbot, panel, lambda: panel.layers_slider.setValue(0))
    assert panel.manual_button.isChecked()  # moving the slider is a manual choice
    assert plan.verdict == CPU_ONLY and panel.verdict.text() == CPU_ONLY
    assert gpu_part(panel, "Weights") == 0
    assert gpu_part(panel, "Weights", section=1) > host_weights_partial

    plan = change(qtbot, panel, lambda: panel.layers_slider.setValue(panel.layers_slider.maximum()))
    assert plan.verdict == TOO_LARGE
    assert panel.verdict.text() == "Too large for this machine"
    assert panel.verdict.property("verdict") == "too-large"
    assert "over by" in panel.sections[0].figure.text()
    assert "does not fit" in panel.speed.text()
    assert "does not fit" in panel.apply_button.toolTip()


def test_context_and_kv_type_change_the_kv_figure(qtbot, panel, llama8b, laptop):
    plan = show(qtbot, panel, llama8b, laptop, OffloadChoice(gpu_layers=10, context=4096))
    small = sum(d.kv_bytes for d in plan.devices)
    assert panel.kv_figure.text().startswith("KV cache: 512.0 MiB (f16, 4,096 tokens)")

    plan = change(qtbot, panel, lambda: panel.context_spin.setValue(8192))
    assert sum(d.kv_bytes for d in plan.devices) == 2 * small
    assert "8,192 tokens" in panel.kv_figure.text()
    assert panel.context_slider.value() == 4  # 512, 1024, 2048, 4096, 8192

    plan = change(qtbot, panel, lambda: panel.kv_combo.setCurrentIndex(panel.kv_combo.findData("q8_0")))
    assert plan.kv_type == "q8_0"
    assert sum(d.kv_bytes for d in plan.devices) < 2 * small
    assert "q8_0" in panel.kv_figure.text()
    assert panel.flash_check.isChecked() and not panel.flash_check.isEnabled()  # q8_0 needs flash attention


def test_the_context_slider_steps_through_round_lengths(qtbot, panel, llama8b, laptop):
    show(qtbot, panel, llama8b, laptop, OffloadChoice(context=4096))
    change(qtbot, panel, lambda: panel.context_slider.setValue(panel.context_slider.maximum()))
    assert panel.context_spin.value() == 131072
    assert panel.choice().context == 131072


def test_apply_emits_the_choice(qtbot, panel, llama8b, laptop):
    show(qtbot, panel, llama8b, laptop, OffloadChoice(context=PARTIAL_CONTEXT))
    with qtbot.waitSignal(panel.apply_requested) as auto:
        panel.apply_button.click()
    assert auto.args[0] == OffloadChoice(gpu_layers=None, context=PARTIAL_CONTEXT, kv_type="f16", flash_attn=True)

    change(qtbot, panel, lambda: panel.layers_slider.setValue(12))
    change(qtbot, panel, lambda: panel.kv_combo.setCurrentIndex(panel.kv_combo.findData("q4_0")))
    with qtbot.waitSignal(panel.apply_requested) as manual:
        qtbot.mouseClick(panel.apply_button, Qt.MouseButton.LeftButton)
    assert manual.args[0] == OffloadChoice(gpu_layers=12, context=PARTIAL_CONTEXT, kv_type="q4_0", flash_attn=True)

    change(qtbot, panel, lambda: panel.layers_slider.setValue(panel.layers_slider.maximum()))
    with qtbot.waitSignal(panel.apply_requested) as everything:
        panel.apply_button.click()
    assert everything.args[0].gpu_layers == -1


def test_a_manual_choice_is_shown_as_it_was_made(qtbot, panel, llama8b, laptop):
    show(qtbot, panel, llama8b, laptop, OffloadChoice(gpu_layers=-1, context=4096, kv_type="q8_0"))
    assert panel.manual_button.isChecked()
    assert panel.layers_slider.value() == 33 and panel.layers_value.text() == "33 of 33 (all)"
    assert panel.kv_combo.currentData() == "q8_0"
    change(qtbot, panel, lambda: panel.auto_button.setChecked(True))
    assert panel.choice().gpu_layers is None


def test_a_machine_without_a_gpu_runs_smollm2_on_the_cpu(qtbot, panel, smollm2):
    plan = show(qtbot, panel, read_model_info(smollm2), load_profile("cpu-only-16gb"), OffloadChoice(context=2048))
    assert plan.verdict == CPU_ONLY
    assert not panel.no_gpu.isHidden()
    assert not panel.layers_slider.isEnabled() and not panel.manual_button.isEnabled()
    assert [s.title.text() for s in panel.sections] == ["Host RAM"]
    assert panel.context_spin.maximum() == 8192  # SmolLM2's trained context


def test_planning_runs_off_the_ui_thread(qtbot, panel, llama8b, laptop, monkeypatch):
    threads = []
    real = offload_panel.plan_choice

    def recording(*args):
        threads.append(threading.current_thread())
        return real(*args)

    monkeypatch.setattr(offload_panel, "plan_choice", recording)
    show(qtbot, panel, llama8b, laptop, OffloadChoice(context=4096))
    assert threads and threading.main_thread() not in threads


def test_quick_moves_are_planned_once_after_they_settle(qtbot, llama8b, laptop, monkeypatch):
    calls = []
    real = offload_panel.plan_choice
    monkeypatch.setattr(offload_panel, "plan_choice", lambda *args: calls.append(args[2]) or real(*args))
    panel = OffloadPanel(debounce_ms=100)
    qtbot.addWidget(panel)
    show(qtbot, panel, llama8b, laptop, OffloadChoice(context=4096))
    calls.clear()
    with qtbot.waitSignal(panel.planned, timeout=TIMEOUT_MS) as signal:
        for value in range(1, 9):
            panel.layers_slider.setValue(value)
    assert len(calls) == 1 and calls[0].gpu_layers == 8
    assert signal.args[0].n_gpu_layers == 8


def test_the_keyboard_moves_the_layers_and_every_control_is_named(qtbot, panel, llama8b, laptop):
    show(qtbot, panel, llama8b, laptop, OffloadChoice(context=4096))
    panel.layers_slider.setFocus()
    start = panel.layers_slider.value()
    plan = change(qtbot, panel, lambda: qtbot.keyClick(panel.layers_slider, Qt.Key.Key_Left))
    assert panel.manual_button.isChecked() and plan.n_gpu_layers == start - 1
    controls = [w for kind in (QAbstractButton, QSlider, QSpinBox, QComboBox)
                for w in panel.findChildren(kind)]
    assert len(controls) >= 8
    assert all(control.accessibleName() for control in controls), [c for c in controls if not c.accessibleName()]
    assert panel.auto_button.nextInFocusChain() is panel.manual_button


def test_the_dialog_closes_when_the_choice_is_applied(qtbot, llama8b, laptop):
    dialog = OffloadDialog()
    qtbot.addWidget(dialog)
    with qtbot.waitSignal(dialog.panel.planned, timeout=TIMEOUT_MS):
        dialog.show_for(llama8b, laptop, OffloadChoice(context=4096))
    assert dialog.isVisible()
    with qtbot.waitSignal(dialog.apply_requested):
        dialog.panel.apply_button.click()
    assert not dialog.isVisible()


def test_the_speed_line_never_says_a_fitting_model_does_not_fit(llama8b, laptop):
    from dataclasses import replace

    from core.fit.planner import plan

    fitting = plan(llama8b, laptop)
    assert fitting.fits
    unknown = replace(fitting, predicted_tokens_per_second=None, predicted_prompt_tokens_per_second=None)
    assert offload_panel.speed_text(unknown) == ("Predicted speed: not known yet: no memory-bandwidth figure for a "
                                                 "device it runs on")
    known = replace(fitting, predicted_tokens_per_second=42.0, predicted_prompt_tokens_per_second=None)
    assert offload_panel.speed_text(known) == "Predicted speed: about 42 tokens/s"
    too_large = replace(fitting, verdict=TOO_LARGE, predicted_tokens_per_second=None)
    assert offload_panel.speed_text(too_large) == "Predicted speed: — (it does not fit)"


def test_a_host_plan_carries_a_speed_once_the_host_bandwidth_is_measured():
    from dataclasses import replace

    from core.fit.planner import PlanRequest, plan
    from core.machine import bandwidth, hardware

    small = read_model_info(zoo_model("llama3.2-1b"))
    cpu_only = replace(hardware.probe(), gpus=())
    assert plan(small, cpu_only, PlanRequest(context=4096)).predicted_tokens_per_second is None  # never measured
    bandwidth.host_bandwidth()  # what the app does once, in the background, at its first start
    measured = replace(hardware.probe(), gpus=())  # reads the cached figure
    chosen = plan(small, measured, PlanRequest(context=4096))
    assert chosen.verdict == CPU_ONLY and chosen.predicted_tokens_per_second > 0
    assert offload_panel.speed_text(chosen).startswith("Predicted speed: about ")


# --- MoE expert placement -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gpt_oss():
    return read_model_info(zoo_model("gpt-oss-20b"))


def test_a_moe_model_offers_experts_on_the_cpu_and_shows_where_auto_put_them(qtbot, panel, gpt_oss, laptop):
    plan = show(qtbot, panel, gpt_oss, laptop, OffloadChoice(context=8192))
    assert panel.experts_spin.isVisible() and panel.experts_spin.text() == "Auto"
    assert 0 < plan.cpu_expert_layers < 24
    assert panel.placement.text() == plan.placement
    assert panel.placement.text().startswith(f"Experts of {plan.cpu_expert_layers} of 24 layers on the CPU")
    assert panel.experts_value.text() == f"{plan.cpu_expert_layers} layers · chosen by the planner"
    assert panel.choice().cpu_expert_layers is None

    fixed = change(qtbot, panel, lambda: panel.experts_spin.setValue(16))
    assert fixed.cpu_expert_layers == 16 and panel.experts_spin.text() == "16 of 24 layers"
    assert panel.experts_value.text() == "" and panel.placement.text().startswith("Experts of 16 of 24 layers")
    assert gpu_part(panel, "Weights") < plan.devices[0].weights_bytes  # more experts left the GPU
    with qtbot.waitSignal(panel.apply_requested) as applied:
        panel.apply_button.click()
    assert applied.args[0] == OffloadChoice(context=8192, cpu_expert_layers=16)

    change(qtbot, panel, lambda: panel.experts_spin.setValue(panel.experts_spin.minimum()))
    assert panel.choice().cpu_expert_layers is None and panel.experts_spin.text() == "Auto"


def test_a_saved_expert_count_is_shown_as_chosen(qtbot, panel, gpt_oss, laptop):
    plan = show(qtbot, panel, gpt_oss, laptop, OffloadChoice(context=8192, cpu_expert_layers=12))
    assert panel.experts_spin.value() == 12 and plan.cpu_expert_layers == 12


def test_a_dense_model_has_no_experts_control(qtbot, panel, llama8b, laptop):
    plan = show(qtbot, panel, llama8b, laptop, OffloadChoice(context=4096, cpu_expert_layers=6))
    assert not panel.experts_spin.isVisible() and panel.choice().cpu_expert_layers is None
    assert panel.placement.text() == plan.placement == f"All layers on GPU · ~{plan.predicted_tokens_per_second:.0f} tok/s"


def test_a_plan_that_does_not_fit_shows_no_placement(qtbot, panel, llama8b):
    plan = show(qtbot, panel, llama8b, load_profile("cpu-only-16gb"), OffloadChoice(context=131072))
    assert plan.verdict == TOO_LARGE and panel.placement.text() == "" and not panel.placement.isVisible()
