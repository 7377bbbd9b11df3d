"""The memory dashboard (offscreen): bars, legends, charts, the prediction box, empty states, cost."""
from __future__ import annotations

import dataclasses
import time

import pytest
import shiboken6
from PySide6.QtCharts import QChartView
from PySide6.QtWidgets import QGraphicsTextItem, QGroupBox, QLabel, QScrollArea

from core.engine.protocol import DeviceAllocation, LoadedModel, LoadSettings, ProjectorLoaded
from core.monitor.history import MemoryHistory, app_resident
from core.fit import calibration
from core.monitor.samples import GpuMemory, MemorySample
from desktop.monitor.dashboard import NO_GPU, MemoryDashboard
from desktop.monitor.history_chart import HistoryChart
from desktop.monitor.sampler import MemorySampler
from desktop.widgets.stacked_bar import StackedBar

GIB, MIB = 2**30, 2**20
START = 1_700_000_000.0
TEXT_ITEM = 8  # QGraphicsTextItem::Type


@pytest.fixture
def dashboard(qtbot):
    widget = MemoryDashboard()
    qtbot.addWidget(widget)
    widget.resize(440, 1200)
    widget.show()
    return widget


def two_gpus(second: int = 0) -> tuple[GpuMemory, ...]:
    return (GpuMemory(0, "NVIDIA GeForce RTX 4090", int(15.4 * GIB), 24 * GIB, int(14.1 * GIB) + second, 87.0),
            GpuMemory(1, "NVIDIA GeForce RTX 3090", 9 * GIB, 24 * GIB, int(8.6 * GIB), None))


def sample(second: int = 0, *, gpus=(), engine: int | None = 5 * GIB, cpu: float | None = 42.0) -> MemorySample:
    return MemorySample(timestamp=START + second, host_used_bytes=20 * GIB, host_total_bytes=64 * GIB,
                        app_resident_bytes=300 * MIB, engine_resident_bytes=engine, gpus=gpus, cpu_percent=cpu)


def memory(timestamp: float, *, app: int) -> MemorySample:
    return MemorySample(timestamp=timestamp, host_used_bytes=20 * GIB, host_total_bytes=64 * GIB,
                        app_resident_bytes=app, engine_resident_bytes=None, gpus=())


def test_feeding_700_samples_keeps_the_last_600_points(dashboard):
    for second in range(700):
        dashboard.show_sample(sample(second, gpus=two_gpus(second), engine=5 * GIB + second))
    assert len(dashboard.history) == 600
    assert dashboard.history.latest.timestamp == START + 699
    for chart, keys in ((dashboard.ram_chart, ("engine", "app")),
                        (dashboard.vram_chart, ("gpu0-app", "gpu0-used", "gpu1-app", "gpu1-used")),
                        (dashboard.busy_chart, ("cpu", "gpu0"))):
        for key in keys:
            assert chart.point_count(key) == 600, (chart.accessibleName(), key)
    first = dashboard.ram_chart.lines["engine"].series.at(0)
    assert first.x() == (START + 100) * 1000
    assert dashboard.busy_chart.point_count("gpu1") == 0  # its utilisation was never known
    assert dashboard.vram_chart.peak("gpu0-app") == int(14.1 * GIB) + 699


def test_bars_and_labels_show_a_two_gpu_sample(dashboard):
    dashboard.show_sample(sample(gpus=two_gpus()))
    assert set(dashboard.gpu_sections) == {0, 1}
    first, second = dashboard.gpu_sections[0], dashboard.gpu_sections[1]
    assert first.title.text() == "GPU 0 · NVIDIA GeForce RTX 4090"
    assert first.figure.text() == "87 % busy" and second.figure.text() == ""
    assert [(p.name, p.bytes) for p in first.bar.parts] == [
        ("This app", int(14.1 * GIB)), ("Others", int(15.4 * GIB) - int(14.1 * GIB)), ("Free", int(8.6 * GIB) + 1)]
    description = first.bar.accessibleDescription()
    assert "This app 14.1 GiB (59 %)" in description and "Others 1.3 GiB" in description
    assert "Free 8.6 GiB" in description and "of 24.0 GiB" in description
    assert "This&nbsp;app" in first.legend.text() and "14.1&nbsp;GiB" in first.legend.text()
    assert "This app 8.6 GiB" in second.bar.accessibleDescription()
    host = dashboard.host_section
    assert [p.name for p in host.bar.parts] == ["Engine", "App", "Others", "Free"]
    assert sum(p.bytes for p in host.bar.parts) == 64 * GIB
    assert "Engine 5.0 GiB (8 %)" in host.bar.accessibleDescription()
    assert "Others 14.7 GiB" in host.bar.accessibleDescription()
    assert "Free 44.0 GiB" in host.bar.accessibleDescription()
    assert host.figure.text() == "CPU 42 % busy"
    assert dashboard.no_gpu.isHidden() and dashboard.vram_chart.isVisible()
    assert "GPU 1 app 8.6 GiB" in dashboard.peaks.text()


def test_unknown_per_process_vram_is_said_in_words(dashboard):
    apple = GpuMemory(0, "Apple M2 Pro", 9 * GIB, 21 * GIB, None, None, unified_memory=True)
    dashboard.show_sample(sample(gpus=(apple,)))
    section = dashboard.gpu_sections[0]
    assert section.title.text() == "GPU 0 · Apple M2 Pro (shares host RAM)"
    assert [p.name for p in section.bar.parts] == ["Used (per-process share unknown)", "Free"]


def loaded_model(allocations=(), gpu_bytes=None, predicted_gpu=None, n_gpu_layers=0) -> LoadedModel:
    settings = LoadSettings(model_path="/m/SmolLM2-135M-Instruct.Q4_1.gguf", predicted_host_bytes=262 * MIB,
                            predicted_gpu_bytes=predicted_gpu, n_gpu_layers=n_gpu_layers)
    return LoadedModel(model_path=settings.model_path, n_ctx=4096, n_gpu_layers=n_gpu_layers, n_layers=30,
                       backend="CPU", load_seconds=0.3, resident_bytes=380 * MIB, resident_growth_bytes=201 * MIB,
                       gpu_bytes=gpu_bytes, chat_template_source="model", settings=settings, allocations=allocations)


def test_prediction_box_compares_with_what_llama_cpp_allocated_not_resident_memory(dashboard, qtbot):
    host = DeviceAllocation("CPU", model_bytes=200 * MIB, kv_bytes=40 * MIB, compute_bytes=11 * MIB)
    dashboard.show_loaded_model(loaded_model((host,)))
    box = dashboard.prediction
    assert box.model_label.text() == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert box.host_label.text() == ("Predicted 262.0 MiB · actual 251.0 MiB (llama.cpp) · \u22124.2 % · "
                                     "resident memory 380.0 MiB")
    assert box.gpu_label.text() == "Not used — every layer runs on the CPU"
    qtbot.waitUntil(lambda: calibration.loads_recorded() == 1)  # kept for this machine's calibration
    dashboard.show_loaded_model(None)
    assert box.model_label.text() == "No model loaded"
    assert not box.host_label.isVisible() and not box.gpu_label.isVisible()


def test_prediction_box_shows_gpu_allocations_and_the_vram_in_use_labelled(dashboard):
    allocations = (DeviceAllocation("CUDA0", model_bytes=3 * GIB, kv_bytes=512 * MIB, compute_bytes=300 * MIB),
                   DeviceAllocation("CPU", model_bytes=250 * MIB, compute_bytes=12 * MIB))
    dashboard.show_loaded_model(loaded_model(allocations, gpu_bytes=4 * GIB + 300 * MIB, predicted_gpu=4 * GIB,
                                             n_gpu_layers=31))
    gpu = dashboard.prediction.gpu_label.text()
    assert gpu.startswith("Predicted 4.0 GiB · actual 3.8 GiB (llama.cpp) · \u22125.2 %")
    assert gpu.endswith("VRAM in use 4.3 GiB")


def test_a_vision_model_s_projector_is_compared_on_a_row_of_its_own(dashboard):
    host = DeviceAllocation("CPU", model_bytes=200 * MIB, kv_bytes=40 * MIB, compute_bytes=11 * MIB)
    plain = loaded_model((host,))
    vision = dataclasses.replace(
        plain, settings=dataclasses.replace(plain.settings, predicted_projector_bytes=900 * MIB),
        projector=ProjectorLoaded("/m/mmproj-F16.gguf", "CPU", weights_bytes=812 * MIB, compute_bytes=70 * MIB))
    box = dashboard.prediction
    dashboard.show_loaded_model(vision)
    assert box.projector_label.isVisibleTo(box)
    assert box._form.labelForField(box.projector_label).text() == "Projector (CPU)"
    assert box.projector_label.text() == "Predicted 900.0 MiB · actual 882.0 MiB (llama.cpp) · \u22122.0 %"
    assert box.host_label.text().startswith("Predicted 262.0 MiB · actual 251.0 MiB")   # the model alone
    dashboard.show_loaded_model(plain)
    assert not box.projector_label.isVisibleTo(box)


def test_a_load_without_llama_cpp_figures_says_so(dashboard):
    dashboard.show_loaded_model(loaded_model())
    assert dashboard.prediction.host_label.text() == ("Predicted 262.0 MiB · actual not reported · "
                                                      "resident memory 380.0 MiB")


def test_empty_states_read_well(dashboard):
    assert dashboard.status.isVisible() and "Waiting" in dashboard.status.text()
    assert dashboard.prediction.model_label.text() == "No model loaded"
    assert dashboard.no_gpu.isHidden()  # nothing is claimed before the first sample
    dashboard.show_sample(sample(engine=None, cpu=None))
    assert dashboard.status.isHidden()
    assert dashboard.no_gpu.isVisible() and dashboard.no_gpu.text() == NO_GPU
    assert not dashboard.vram_chart.isVisible() and not dashboard.gpu_sections
    assert [p.name for p in dashboard.host_section.bar.parts] == ["App", "Others", "Free"]
    assert dashboard.host_section.figure.text() == ""
    assert dashboard.busy_chart.point_count("cpu") == 0
    assert dashboard.ram_chart.point_count("engine") == 1  # a stopped engine holds nothing


def test_a_dashboard_opened_later_shows_the_history_so_far(qtbot):
    history = MemoryHistory()
    for second in range(30):
        history.append(sample(second, gpus=two_gpus()))
    widget = MemoryDashboard(history)
    qtbot.addWidget(widget)
    assert widget.history is history
    assert widget.ram_chart.point_count("app") == 30 and widget.vram_chart.point_count("gpu1-used") == 30
    assert set(widget.gpu_sections) == {0, 1} and widget.status.isHidden()


def test_byte_axis_reads_in_mib_or_gib(dashboard):
    dashboard.show_sample(sample(0, engine=300 * MIB))
    assert dashboard.ram_chart.unit.name == "MiB" and dashboard.ram_chart.value_axis.max() == 400
    dashboard.show_sample(sample(1, engine=5 * GIB))
    assert dashboard.ram_chart.unit.name == "GiB" and dashboard.ram_chart.value_axis.max() == 6
    assert dashboard.ram_chart.lines["engine"].series.at(0).y() == pytest.approx(300 / 1024)


def test_every_part_has_an_accessible_name(dashboard):
    dashboard.show_sample(sample(gpus=two_gpus()))
    dashboard.show_loaded_model(loaded_model())
    named = [*dashboard.findChildren(StackedBar), *dashboard.findChildren(QChartView),
             *dashboard.findChildren(QGroupBox), *dashboard.findChildren(QScrollArea),
             *(label for label in dashboard.findChildren(QLabel) if label.objectName())]
    assert len(named) > 15
    assert [w for w in named if not w.accessibleName()] == []


def test_sampler_emits_real_samples_off_the_ui_thread(qtbot):
    sampler = MemorySampler(lambda: None, interval_ms=50)
    with qtbot.waitSignal(sampler.sampled, timeout=5000) as got:
        sampler.start()
    sampler.stop()
    assert isinstance(got.args[0], MemorySample) and got.args[0].host_total_bytes > 0


def test_sampler_skips_a_tick_while_a_sample_is_running(qtbot):
    calls: list[int | None] = []

    def slow_sample(pid):
        calls.append(pid)
        time.sleep(0.3)
        return sample()

    sampler = MemorySampler(lambda: 1234, sample=slow_sample)
    with qtbot.waitSignal(sampler.sampled, timeout=5000):
        sampler.sample_now()
        sampler.sample_now()
    assert calls == [1234]


def test_a_chart_draws_every_point_of_the_history(qtbot, qapp):
    """Points are added with the series' signals blocked (see history_chart): the picture must still
    match a chart whose points were appended the ordinary way, both after a new time range and after
    a sample at an unchanged time."""
    history = MemoryHistory()
    fed, reference = HistoryChart("fed", history), HistoryChart("fed", MemoryHistory())
    for chart in (fed, reference):
        qtbot.addWidget(chart)
        chart.add_line("a", "A", app_resident)
        chart.resize(400, 220)
        chart.show()
    points = [(START + second, 50.0 if second % 7 else 300.0) for second in range(120)]
    for time_s, mib in points:
        history.append(memory(time_s, app=int(mib * MIB)))
        fed.refresh()

    def same_picture() -> bool:
        reference.time_axis.setRange(fed.time_axis.min(), fed.time_axis.max())
        reference.time_axis.setFormat(fed.time_axis.format())
        reference.time_axis.setTickCount(fed.time_axis.tickCount())
        reference.value_axis.setRange(fed.value_axis.min(), fed.value_axis.max())
        reference.value_axis.setTickInterval(fed.value_axis.tickInterval())
        qapp.processEvents()
        return fed.grab().toImage() == reference.grab().toImage()

    for time_s, mib in points:
        reference.lines["a"].series.append(time_s * 1000, mib)
    assert same_picture()
    history.append(memory(START + 119, app=20 * MIB))  # the same time again: no new range
    fed.refresh()
    reference.lines["a"].series.append((START + 119) * 1000, 20.0)
    assert fed.point_count("a") == 121
    assert same_picture()


def test_a_chart_follows_its_history_as_samples_fall_out_and_it_is_cleared(qtbot):
    history = MemoryHistory(capacity=5)
    chart = HistoryChart("RAM", history)
    qtbot.addWidget(chart)
    chart.add_line("app", "App", app_resident)
    for second, mib in enumerate((10, 900, 20, 30, 40, 50, 60)):
        history.append(memory(START + second, app=mib * MIB))
        chart.refresh()
    series = chart.lines["app"].series
    assert [point.x() for point in series.points()] == [(START + second) * 1000 for second in range(2, 7)]
    assert chart.peak("app") == 60 * MIB  # the 900 MiB sample fell out with the oldest two
    history.clear()
    chart.refresh()
    assert chart.point_count("app") == 0 and chart.peak("app") is None


def visible_time_labels(chart) -> list[str]:
    """The texts QtCharts drew under the plot area: the time axis's labels. (Its label items are a private
    QGraphicsTextItem subclass that PySide hands out as plain QGraphicsItems: cast them to read the text.)"""
    bottom = chart.chart().plotArea().bottom()
    texts = []
    for item in chart.scene().items():
        if item.type() != TEXT_ITEM or not item.isVisible():
            continue
        label = shiboken6.wrapInstance(shiboken6.getCppPointer(item.toGraphicsObject())[0], QGraphicsTextItem)
        area = label.sceneBoundingRect()
        if label.toPlainText() and bottom <= area.top() and area.bottom() <= bottom + 40:
            texts.append(label.toPlainText())
    return texts


@pytest.mark.parametrize("width", [380, 300, 240])  # the window's default panel width, then narrower
@pytest.mark.parametrize("seconds", [30, 700])  # HH:mm:ss while the span is short, HH:mm for ten minutes
def test_time_labels_are_never_cut(qtbot, qapp, width, seconds):
    history = MemoryHistory()
    chart = HistoryChart("RAM over time", history)
    qtbot.addWidget(chart)
    chart.add_line("app", "App", app_resident)
    chart.resize(width, 200)
    chart.show()
    for second in range(seconds):
        history.append(memory(START + second, app=300 * MIB))
    chart.refresh()
    qapp.processEvents()
    labels = visible_time_labels(chart)
    assert len(labels) >= 2, labels
    assert not [label for label in labels if "…" in label or "..." in label], labels
    length = len("00:00:00") if seconds < 300 else len("00:00")
    assert all(len(label) == length for label in labels), labels


@pytest.mark.parametrize("value, top, step", [(0.3, 1, 0.25), (5.7, 6, 2), (2.2, 2.5, 0.5), (110, 120, 30),
                                              (26.4, 30, 10), (100, 100, 25), (801, 1000, 250)])
def test_value_axis_tops_and_steps_are_round(value, top, step):
    from desktop.monitor.history_chart import nice_ceiling, tick_interval

    assert nice_ceiling(value) == pytest.approx(top)
    assert tick_interval(nice_ceiling(value)) == pytest.approx(step)


def test_a_fresh_chart_shows_the_span_it_has_data_for(dashboard):
    for second in range(30):
        dashboard.show_sample(sample(second))
    chart = dashboard.findChildren(QChartView)[0]
    axis = chart.time_axis
    span = (axis.max().toMSecsSinceEpoch() - axis.min().toMSecsSinceEpoch()) / 1000
    assert span == 120  # two minutes while there is little history, not a sliver of a ten-minute window
    for second in range(30, 700):
        dashboard.show_sample(sample(second))
    span = (axis.max().toMSecsSinceEpoch() - axis.min().toMSecsSinceEpoch()) / 1000
    assert span == 600
