"""The settings dialog and the themes (offscreen): every field saved and loaded, themes applied live."""
from __future__ import annotations

import re

from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QAbstractButton, QComboBox, QListWidget, QSpinBox

from core.engine.protocol import DeviceAllocation, LoadedModel, LoadSettings
from core.fit import calibration
from core.platform import locations
from core import settings as settings_store
from core.settings import RemoteEndpoint, Settings
from desktop import theme
from desktop.settings import settings_dialog
from desktop.settings.settings_dialog import NO_TELEMETRY, SettingsDialog

TIMEOUT_MS = 5000
STYLES = locations.resources_dir() / "styles"


def open_dialog(qtbot, settings: Settings, physical_cores: int | None = 8) -> SettingsDialog:
    dialog = SettingsDialog(settings, physical_cores=physical_cores)
    qtbot.addWidget(dialog)
    dialog.show()
    return dialog


def save(qtbot, dialog: SettingsDialog) -> Settings:
    with qtbot.waitSignal(dialog.settings_changed, timeout=TIMEOUT_MS) as signal:
        dialog.save_button.click()
    return signal.args[0]


def test_every_field_round_trips_through_save_and_load(qtbot):
    before = Settings(recent_models=("/m/a.gguf",), system_prompt="Kept.", model_folders=("/old",),
                      gpu_layers=12, kv_type="q8_0", cpu_expert_layers=6)
    dialog = open_dialog(qtbot, before)
    dialog.folders.add_folder("/models/new")
    dialog.folders.list.setCurrentRow(0)
    dialog.folders.remove_selected()
    dialog.threads_spin.setValue(6)
    dialog.context_spin.setValue(16384)
    dialog.margin_spin.setValue(512)
    dialog.learned_check.setChecked(False)
    dialog.theme_combo.setCurrentIndex(dialog.theme_combo.findData("dark"))
    dialog.remotes.url_edit.setText("http://192.168.1.30:8080")
    dialog.remotes.key_edit.setText("secret")
    dialog.remotes.name_edit.setText("Office PC")  # typed, not added: Save adds it
    saved = save(qtbot, dialog)
    assert saved == Settings(recent_models=("/m/a.gguf",), system_prompt="Kept.", model_folders=("/models/new",),
                             threads=6, context_length=16384, safety_margin_mib=512, theme="dark",
                             gpu_layers=12, kv_type="q8_0", learned_margin=False, cpu_expert_layers=6,
                             remote_endpoints=(RemoteEndpoint("http://192.168.1.30:8080", "secret", "Office PC"),))
    assert settings_store.load() == saved
    assert not dialog.isVisible()

    again = open_dialog(qtbot, settings_store.load())
    assert again.folders.folders() == ("/models/new",)
    assert (again.threads_spin.value(), again.context_spin.value(), again.margin_spin.value()) == (6, 16384, 512)
    assert again.chosen_theme() == "dark" and not again.learned_check.isChecked()
    assert again.remotes.list.item(0).text() == "Office PC — http://192.168.1.30:8080 · with an API key"


def test_threads_zero_reads_auto_with_the_detected_cores(qtbot):
    dialog = open_dialog(qtbot, Settings(threads=0), physical_cores=8)
    assert dialog.threads_spin.text() == "Auto"
    assert "8 physical cores" in dialog.cores_note.text()


def test_without_a_core_count_the_dialog_detects_one_in_the_background(qtbot):
    dialog = open_dialog(qtbot, Settings(), physical_cores=None)
    qtbot.waitUntil(lambda: "physical cores of this computer" in dialog.cores_note.text(), timeout=TIMEOUT_MS)


def test_folders_are_not_added_twice_and_remove_needs_a_selection(qtbot):
    dialog = open_dialog(qtbot, Settings(model_folders=("/a",)))
    dialog.folders.add_folder("/a")
    dialog.folders.add_folder("")
    assert dialog.folders.folders() == ("/a",)
    dialog.folders.list.setCurrentRow(-1)
    assert not dialog.folders.remove_button.isEnabled()


def test_the_dialog_says_there_is_no_telemetry(qtbot):
    dialog = open_dialog(qtbot, Settings())
    assert dialog.telemetry.text() == NO_TELEMETRY
    assert "no telemetry" in NO_TELEMETRY and dialog.telemetry.isVisible()


def test_a_failed_save_says_so_and_keeps_the_dialog_open(qtbot, monkeypatch):
    def refuse(_settings):
        raise OSError("disk full")

    monkeypatch.setattr(settings_dialog.settings_store, "save", refuse)
    dialog = open_dialog(qtbot, Settings())
    with qtbot.assertNotEmitted(dialog.settings_changed, wait=200):
        dialog.save_button.click()
        qtbot.waitUntil(lambda: dialog.error.isVisible(), timeout=TIMEOUT_MS)
    assert "disk full" in dialog.error.text()
    assert dialog.isVisible() and dialog.save_button.isEnabled()


def test_choosing_a_theme_applies_it_live_and_cancel_puts_it_back(qtbot, qapp):
    theme.apply_theme(qapp, "light")
    dialog = open_dialog(qtbot, Settings(theme="light"))
    dialog.theme_combo.setCurrentIndex(dialog.theme_combo.findData("dark"))
    assert qapp.styleSheet() == (STYLES / "dark.qss").read_text(encoding="utf-8")
    assert qapp.palette().color(QPalette.ColorRole.Window).lightness() < 80
    dialog.reject()
    assert qapp.styleSheet() == (STYLES / "app.qss").read_text(encoding="utf-8")
    assert qapp.palette().color(QPalette.ColorRole.Window).lightness() > 180


def test_the_system_theme_follows_the_desktop(qapp, monkeypatch):
    assert theme.system_look(qapp) in ("light", "dark")
    monkeypatch.setattr(theme, "system_look", lambda _app: "dark")
    assert theme.apply_theme(qapp, "system") == "dark"
    assert theme.current_theme(qapp) == "system"
    monkeypatch.setattr(theme, "system_look", lambda _app: "light")
    assert theme.apply_theme(qapp, "system") == "light"
    assert qapp.styleSheet() == (STYLES / "app.qss").read_text(encoding="utf-8")


def test_dark_styles_every_object_name_the_light_look_styles():
    def object_names(path):
        text = re.sub(r"/\*.*?\*/|\{[^}]*\}", "", path.read_text(encoding="utf-8"), flags=re.S)
        return set(re.findall(r"#([A-Za-z]\w*)", text))

    light, dark = object_names(STYLES / "app.qss"), object_names(STYLES / "dark.qss")
    assert light and light <= dark, light - dark


def test_every_control_is_named_and_the_tab_order_follows_the_form(qtbot):
    dialog = open_dialog(qtbot, Settings(model_folders=("/a",)))
    controls = [w for kind in (QAbstractButton, QSpinBox, QComboBox, QListWidget) for w in dialog.findChildren(kind)]
    assert all(control.accessibleName() for control in controls), [c for c in controls if not c.accessibleName()]
    expected = [dialog.folders.list, dialog.folders.add_button, dialog.folders.remove_button, dialog.threads_spin,
                dialog.context_spin, dialog.margin_spin, dialog.learned_check, dialog.reset_button, dialog.theme_combo,
                dialog.save_button]
    chain, widget = [], dialog.folders.list
    while widget not in chain:
        chain.append(widget)
        widget = widget.nextInFocusChain()
    assert [w for w in chain if w in expected] == expected


def gpu_load(predicted_mib: int, allocated_mib: int, in_use_mib: int) -> LoadedModel:
    settings = LoadSettings("/m/model.gguf", n_gpu_layers=-1, predicted_host_bytes=300 * MiB,
                            predicted_gpu_bytes=predicted_mib * MiB)
    allocations = (DeviceAllocation("CUDA0", model_bytes=allocated_mib * MiB), DeviceAllocation("CPU", 300 * MiB))
    return LoadedModel("/m/model.gguf", 4096, 33, 32, "CUDA", 1.0, 900 * MiB, 400 * MiB, in_use_mib * MiB, "model",
                       settings, allocations=allocations)


MiB = 1024 * 1024


def test_the_learned_margin_shows_after_three_gpu_loads_and_reset_forgets_it(qtbot):
    dialog = open_dialog(qtbot, Settings())
    qtbot.waitUntil(lambda: "not yet" in dialog.learned_note.text(), timeout=TIMEOUT_MS)
    for in_use in (4300, 4400, 4350):   # the GPU really held up to 400 MiB more than the 4000 MiB predicted
        calibration.record_load(gpu_load(4000, 3900, in_use))
    again = open_dialog(qtbot, Settings())
    # 400 MiB worst excess, with 25 % headroom and a 128 MiB floor, in 64 MiB steps
    qtbot.waitUntil(lambda: again.learned_note.text() == "Learned margin on this machine: 640 MiB",
                    timeout=TIMEOUT_MS)
    again.reset_button.click()
    qtbot.waitUntil(lambda: "not yet" in again.learned_note.text(), timeout=TIMEOUT_MS)
    assert calibration.learned_margin_bytes() is None
