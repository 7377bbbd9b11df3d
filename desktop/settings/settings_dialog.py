"""The settings dialog: model folders, threads, default context, GPU safety margin (or the one learned from this
machine's loads, with a reset), theme and the remote engines (OpenAI-compatible servers on other computers whose
models the picker's Remote tab lists).

    dialog = SettingsDialog(settings, physical_cores=snapshot.host.physical_cores)
    dialog.settings_changed.connect(use_settings)        # Settings, emitted once they are saved
    dialog.open()

Saving goes through core.settings in a Task; the theme applies live and is put back on Cancel.
"""
from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (QApplication, QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFormLayout,
                               QHBoxLayout, QLabel, QLineEdit, QListWidget, QListWidgetItem, QPushButton, QSizePolicy,
                               QSpinBox, QVBoxLayout, QWidget)

from core.fit import calibration
from core.machine import hardware
from core import settings as settings_store
from core.settings import RemoteEndpoint, Settings, endpoint_url_problem
from desktop.settings.folder_list import FolderList
from desktop.tasks import Task
from desktop.theme import THEME_LABELS, apply_theme

NO_TELEMETRY = ("LlamaDesk sends no telemetry: nothing leaves this computer except the model downloads "
                "you start.")
MARGIN_NOTE = "Kept free on each GPU for the driver, the desktop and other apps."
MiB = 1024 * 1024


def learned_margin_text(learned_bytes: int | None) -> str:
    if learned_bytes is None:
        return (f"Learned margin on this machine: not yet — it is learned from llama.cpp's own figures after "
                f"{calibration.MIN_LOADS} loads on a GPU; until then the margin above applies.")
    return f"Learned margin on this machine: {learned_bytes // MiB:,} MiB"


def _spin(name: str, low: int, high: int, step: int, suffix: str) -> QSpinBox:
    spin = QSpinBox()
    spin.setAccessibleName(name)
    spin.setRange(low, high)
    spin.setSingleStep(step)
    spin.setSuffix(suffix)
    spin.setGroupSeparatorShown(True)
    return spin


def _note(text: str, name: str) -> QLabel:
    label = QLabel(text)
    label.setObjectName("settingsNote")
    label.setAccessibleName(name)
    label.setWordWrap(True)
    label.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
    return label


def cores_text(physical: int | None) -> str:
    if physical is None:
        return "Auto uses this computer's physical cores."
    return f"Auto uses the {physical} physical cores of this computer."


def endpoint_text(endpoint: RemoteEndpoint) -> str:
    key = " · with an API key" if endpoint.api_key else ""
    return (f"{endpoint.name} — {endpoint.url}" if endpoint.name else endpoint.url) + key


class RemoteEndpointList(QWidget):
    """The remote engines: a list, and a row to add one (address, optional key and name); a bad address is
    refused with its sentence under the row."""

    def __init__(self, endpoints: tuple[RemoteEndpoint, ...], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.list = QListWidget()
        self.list.setAccessibleName("Remote engines")
        self.list.setMaximumHeight(90)
        self.url_edit = QLineEdit()
        self.url_edit.setAccessibleName("Remote engine address")
        self.url_edit.setPlaceholderText("http://192.168.1.30:8080")
        self.key_edit = QLineEdit()
        self.key_edit.setAccessibleName("Remote engine API key")
        self.key_edit.setPlaceholderText("API key (optional)")
        self.key_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.name_edit = QLineEdit()
        self.name_edit.setAccessibleName("Remote engine name")
        self.name_edit.setPlaceholderText("Name (optional)")
        self.add_button = QPushButton("Add")
        self.add_button.setAccessibleName("Add the remote engine")
        self.remove_button = QPushButton("Remove")
        self.remove_button.setAccessibleName("Remove the selected remote engine")
        self.remove_button.setEnabled(False)
        self.error = _note("", "Remote engine error")
        self.error.setObjectName("settingsError")
        self.error.hide()
        self._lay_out()
        for endpoint in endpoints:
            self._append(endpoint)
        self.add_button.clicked.connect(self.add_from_fields)
        self.remove_button.clicked.connect(self.remove_selected)
        self.list.currentRowChanged.connect(lambda row: self.remove_button.setEnabled(row >= 0))

    def _lay_out(self) -> None:
        fields = QHBoxLayout()
        fields.addWidget(self.url_edit, 3)
        fields.addWidget(self.key_edit, 2)
        fields.addWidget(self.name_edit, 2)
        fields.addWidget(self.add_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        list_row = QHBoxLayout()
        list_row.addWidget(self.list, 1)
        list_row.addWidget(self.remove_button, 0, Qt.AlignmentFlag.AlignTop)
        layout.addLayout(list_row)
        layout.addLayout(fields)
        layout.addWidget(self.error)

    def endpoints(self) -> tuple[RemoteEndpoint, ...]:
        return tuple(self.list.item(row).data(Qt.ItemDataRole.UserRole) for row in range(self.list.count()))

    def add_from_fields(self) -> bool:
        """Add what the fields say; False (and the sentence shown) when the address cannot be one."""
        url = self.url_edit.text().strip().rstrip("/")
        problem = endpoint_url_problem(url)
        if problem is None and any(endpoint.url == url for endpoint in self.endpoints()):
            problem = f"{url} is in the list already."
        self.error.setText(problem or "")
        self.error.setVisible(problem is not None)
        if problem is not None:
            return False
        self._append(RemoteEndpoint(url, self.key_edit.text().strip(), self.name_edit.text().strip()))
        for edit in (self.url_edit, self.key_edit, self.name_edit):
            edit.clear()
        return True

    def remove_selected(self) -> None:
        row = self.list.currentRow()
        if row >= 0:
            self.list.takeItem(row)

    def _append(self, endpoint: RemoteEndpoint) -> None:
        item = QListWidgetItem(endpoint_text(endpoint))
        item.setData(Qt.ItemDataRole.UserRole, endpoint)
        self.list.addItem(item)


class SettingsDialog(QDialog):
    settings_changed = Signal(object)  # Settings, after they are saved

    def __init__(self, settings: Settings, parent: QWidget | None = None, *,
                 physical_cores: int | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("settingsDialog")
        self.setWindowTitle("Settings")
        self.setAccessibleName("Settings")
        self.original = settings
        self._build(settings)
        self._lay_out()
        self._connect()
        self._show_cores(physical_cores)

    # --- building ---

    def _build(self, settings: Settings) -> None:
        self.folders = FolderList(settings.model_folders)
        self.threads_spin = _spin("Threads (0 = auto)", *settings_store.LIMITS["threads"], 1, "")
        self.threads_spin.setSpecialValueText("Auto")
        self.threads_spin.setValue(settings.threads)
        self.cores_note = _note(cores_text(None), "Detected cores")
        self.context_spin = _spin("Default context length", *settings_store.LIMITS["context_length"], 512, " tokens")
        self.context_spin.setValue(settings.context_length)
        self.margin_spin = _spin("GPU safety margin", *settings_store.LIMITS["safety_margin_mib"], 256, " MiB")
        self.margin_spin.setValue(settings.safety_margin_mib)
        self.learned_check = QCheckBox("Use the margin learned on this machine")
        self.learned_check.setAccessibleName("Use the learned margin")
        self.learned_check.setChecked(settings.learned_margin)
        self.learned_note = _note(learned_margin_text(None), "Learned margin")
        self.reset_button = QPushButton("Reset")
        self.reset_button.setAccessibleName("Forget the learned margin and speeds")
        self.reset_button.setToolTip("Forget what this machine's loads taught: the learned margin and speed factors.")
        self.theme_combo = QComboBox()
        self.theme_combo.setAccessibleName("Theme")
        for theme in settings_store.CHOICES["theme"]:
            self.theme_combo.addItem(THEME_LABELS[theme], theme)
        self.theme_combo.setCurrentIndex(self.theme_combo.findData(settings.theme))
        self.remotes = RemoteEndpointList(settings.remote_endpoints)
        self.telemetry = _note(NO_TELEMETRY, "Privacy")
        self.error = _note("", "Save error")
        self.error.setObjectName("settingsError")
        self.error.hide()
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save |
                                        QDialogButtonBox.StandardButton.Cancel)
        self.save_button = self.buttons.button(QDialogButtonBox.StandardButton.Save)
        self.save_button.setObjectName("primary")
        self.save_button.setAccessibleName("Save the settings")
        self.buttons.button(QDialogButtonBox.StandardButton.Cancel).setAccessibleName("Cancel without saving")
        for button in self.buttons.buttons():
            button.setIcon(QIcon())  # some desktop styles add stock icons; no other button in the app has one

    def _lay_out(self) -> None:
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        form.addRow("Model &folders", self.folders)
        form.addRow("&Threads", self.threads_spin)
        form.addRow("", self.cores_note)
        form.addRow("Default &context", self.context_spin)
        form.addRow("GPU safety &margin", self.margin_spin)
        form.addRow("", _note(MARGIN_NOTE, "About the safety margin"))
        form.addRow("", self.learned_check)
        learned = QHBoxLayout()
        learned.addWidget(self.learned_note, 1)
        learned.addWidget(self.reset_button)
        form.addRow("", learned)
        form.addRow("T&heme", self.theme_combo)
        form.addRow("&Remote engines", self.remotes)
        form.labelForField(self.folders).setBuddy(self.folders.list)
        form.labelForField(self.remotes).setBuddy(self.remotes.url_edit)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addSpacing(8)
        layout.addWidget(self.telemetry)
        layout.addWidget(self.error)
        layout.addWidget(self.buttons)
        order = (self.folders.list, self.folders.add_button, self.folders.remove_button, self.threads_spin,
                 self.context_spin, self.margin_spin, self.learned_check, self.reset_button, self.theme_combo,
                 self.remotes.list, self.remotes.remove_button, self.remotes.url_edit, self.remotes.key_edit,
                 self.remotes.name_edit, self.remotes.add_button, self.save_button,
                 self.buttons.button(QDialogButtonBox.StandardButton.Cancel))
        for before, after in zip(order, order[1:]):
            QWidget.setTabOrder(before, after)
        self.setMinimumWidth(520)

    def _connect(self) -> None:
        self.theme_combo.currentIndexChanged.connect(lambda _index: self._apply_theme(self.chosen_theme()))
        self.buttons.accepted.connect(self.save)
        self.buttons.rejected.connect(self.reject)
        self.reset_button.clicked.connect(self.reset_learned_margin)
        self._show_learned_margin()

    def _show_cores(self, physical_cores: int | None) -> None:
        if physical_cores is not None:
            self.cores_note.setText(cores_text(physical_cores))
            return
        (Task(hardware.probe_host)
         .success(lambda host: self.cores_note.setText(cores_text(host.physical_cores)))
         .run_in_background())

    def _show_learned_margin(self) -> None:
        (Task(calibration.learned_margin_bytes, parent=self)
         .success(lambda learned: self.learned_note.setText(learned_margin_text(learned)))
         .run_in_background())

    def reset_learned_margin(self) -> None:
        """Forget this machine's calibration history; the note says what applies now."""
        (Task(calibration.reset, parent=self)
         .success(lambda _none: self._show_learned_margin())
         .failure(lambda error: self.learned_note.setText(f"The learned margin could not be reset: {error}"))
         .run_in_background())

    # --- values ---

    def chosen_theme(self) -> str:
        return self.theme_combo.currentData()

    def values(self) -> Settings:
        """The settings as the dialog shows them (what it does not show is kept as it was)."""
        return replace(self.original, model_folders=self.folders.folders(), threads=self.threads_spin.value(),
                       context_length=self.context_spin.value(), safety_margin_mib=self.margin_spin.value(),
                       learned_margin=self.learned_check.isChecked(), theme=self.chosen_theme(),
                       remote_endpoints=self.remotes.endpoints())

    # --- saving ---

    def save(self) -> None:
        if self.remotes.url_edit.text().strip() and not self.remotes.add_from_fields():
            return  # an address typed and not added is meant to be saved: not while it cannot be one
        chosen = self.values()
        self.save_button.setEnabled(False)
        self.error.hide()
        (Task(settings_store.save, chosen)
         .success(lambda _none: self._saved(chosen))
         .failure(self._save_failed)
         .run_in_background())

    def _saved(self, chosen: Settings) -> None:
        self.original = chosen
        self.settings_changed.emit(chosen)
        self.accept()

    def _save_failed(self, error: BaseException) -> None:
        self.save_button.setEnabled(True)
        self.error.setText(f"The settings could not be saved: {error}")
        self.error.show()

    def reject(self) -> None:
        self._apply_theme(self.original.theme)  # a theme tried and not saved goes back
        super().reject()

    @staticmethod
    def _apply_theme(theme: str) -> None:
        app = QApplication.instance()
        if app is not None:
            apply_theme(app, theme)
