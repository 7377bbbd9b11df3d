"""The conversation's thinking controls, beside its title: "Think" on/off where the loaded model's template can
switch thinking, and an effort (low / medium / high) where it reads one. Hidden where the model offers neither,
or while no model is loaded. Shows a conversation's ThinkingSetting and reports the user's edits as
`changed(ThinkingSetting)`."""
from __future__ import annotations

import dataclasses

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel, QWidget

from core.chat.conversation import ThinkingSetting
from core.engine.protocol import ThinkingSupport

DEFAULT_EFFORT = "medium"    # shown when the conversation leaves the effort to the template (gpt-oss's default)


class ThinkingControls(QWidget):
    changed = Signal(object)      # ThinkingSetting

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("thinkingControls")
        self.think = QCheckBox("Think")
        self.think.setAccessibleName("Let the model think before it answers")
        self.think.setToolTip("The model writes its reasoning first (shown apart, above the answer).")
        self.effort_label = QLabel("Effort")
        self.effort = QComboBox()
        self.effort.setAccessibleName("How hard the model thinks")
        self.effort_label.setBuddy(self.effort)
        self._setting = ThinkingSetting()
        self._support = ThinkingSupport()
        self._showing = False
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for widget in (self.think, self.effort_label, self.effort):
            layout.addWidget(widget)
        self.think.toggled.connect(self._think_toggled)
        self.effort.activated.connect(self._effort_chosen)
        self.show_support(None)

    @property
    def setting(self) -> ThinkingSetting:
        return self._setting

    def show_support(self, support: ThinkingSupport | None) -> None:
        """What the loaded model lets a user choose (None: no model loaded): only those controls show."""
        self._support = support or ThinkingSupport()
        self._showing = True
        self.effort.clear()
        for level in self._support.efforts:
            self.effort.addItem(level.capitalize(), level)
        self._showing = False
        self.think.setVisible(self._support.can_toggle)
        self.effort_label.setVisible(bool(self._support.efforts))
        self.effort.setVisible(bool(self._support.efforts))
        self.setVisible(self._support.can_toggle or bool(self._support.efforts))
        self._show_setting()

    def show_setting(self, setting: ThinkingSetting) -> None:
        """A conversation's choice (when another conversation opens)."""
        self._setting = setting
        self._show_setting()

    def _show_setting(self) -> None:
        showing, self._showing = self._showing, True
        # Left to the template: thinking templates that can be switched think by default.
        self.think.setChecked(self._setting.enabled is not False)
        efforts = self._support.efforts
        effort = self._setting.effort if self._setting.effort in efforts else (
            DEFAULT_EFFORT if DEFAULT_EFFORT in efforts else (efforts[0] if efforts else None))
        if effort is not None:
            self.effort.setCurrentIndex(self.effort.findData(effort))
        self.effort.setEnabled(self._setting.enabled is not False)
        self._showing = showing

    def _think_toggled(self, checked: bool) -> None:
        self.effort.setEnabled(checked)
        if not self._showing:
            self._edit(enabled=checked)

    def _effort_chosen(self, _index: int) -> None:
        if not self._showing:
            self._edit(effort=self.effort.currentData())

    def _edit(self, **change) -> None:
        self._setting = dataclasses.replace(self._setting, **change)
        self.changed.emit(self._setting)
