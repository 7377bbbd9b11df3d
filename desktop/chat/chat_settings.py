"""Per-conversation settings: the system prompt and how the model samples (a preset or custom values).
Shows a conversation's values and reports edits as `changed(system_prompt, preset, SamplingValues)`."""
from __future__ import annotations

import dataclasses

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QFormLayout, QGridLayout, QLabel, QPlainTextEdit,
                               QSpinBox, QWidget)

from core.chat.conversation import (CUSTOM_PRESET, PRESETS, SAMPLING_LIMITS, Conversation, SamplingValues,
                                    preset_name)

SAVE_DELAY_MS = 400


class ChatSettings(QWidget):
    changed = Signal(str, str, object)   # system prompt, preset name, SamplingValues

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("chatSettings")
        self.system_prompt = QPlainTextEdit()
        self.system_prompt.setAccessibleName("System prompt")
        self.system_prompt.setPlaceholderText("How the assistant should behave in this chat (optional)")
        self.system_prompt.setTabChangesFocus(True)
        self.system_prompt.setFixedHeight(56)
        self.preset = QComboBox()
        self.preset.setAccessibleName("Sampling preset")
        self.preset.addItems([*PRESETS, CUSTOM_PRESET])
        limits = SAMPLING_LIMITS
        self.temperature = _spin(QDoubleSpinBox(), "Temperature", *limits["temperature"], 0.05, decimals=2)
        self.top_p = _spin(QDoubleSpinBox(), "Top P", *limits["top_p"], 0.01, decimals=2)
        self.top_k = _spin(QSpinBox(), "Top K", *limits["top_k"], 5)
        self.repeat_penalty = _spin(QDoubleSpinBox(), "Repeat penalty", *limits["repeat_penalty"], 0.05, decimals=2)
        self.max_tokens = _spin(QSpinBox(), "Maximum answer length in tokens", *limits["max_tokens"], 64)
        self._values = PRESETS["Balanced"]
        self._showing = False
        self._save_timer = QTimer(self, singleShot=True, interval=SAVE_DELAY_MS)
        self._lay_out()
        self._connect()

    def _lay_out(self) -> None:
        sampling = QGridLayout()
        fields = (("Preset", self.preset), ("Temperature", self.temperature), ("Top P", self.top_p),
                  ("Max tokens", self.max_tokens), ("Top K", self.top_k), ("Repeat penalty", self.repeat_penalty))
        for number, (label, field) in enumerate(fields):
            caption = QLabel(label)
            caption.setBuddy(field)
            row, column = divmod(number, 3)
            sampling.addWidget(caption, row, column * 2)
            sampling.addWidget(field, row, column * 2 + 1)
        sampling.setColumnStretch(6, 1)
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 6)
        form.addRow("System prompt", self.system_prompt)
        form.addRow("Sampling", sampling)

    def _connect(self) -> None:
        self.preset.activated.connect(self._preset_chosen)
        for field in self.number_fields():
            field.valueChanged.connect(self._number_edited)
        self.system_prompt.textChanged.connect(self._edited)
        self._save_timer.timeout.connect(self._emit)

    # --- showing ---

    def show_conversation(self, conversation: Conversation) -> None:
        self._save_timer.stop()
        self._showing = True
        self.system_prompt.setPlainText(conversation.system_prompt)
        self._show_values(conversation.sampling)
        self._showing = False

    def values(self) -> SamplingValues:
        return self._values

    def flush(self) -> None:
        """Report a pending edit now (before sending a message or switching chats)."""
        if self._save_timer.isActive():
            self._save_timer.stop()
            self._emit()

    def _show_values(self, values: SamplingValues) -> None:
        self._values = values
        showing, self._showing = self._showing, True
        self.preset.setCurrentText(preset_name(values))
        self.temperature.setValue(values.temperature)
        self.top_p.setValue(values.top_p)
        self.top_k.setValue(values.top_k)
        self.repeat_penalty.setValue(values.repeat_penalty)
        self.max_tokens.setValue(values.max_tokens)
        self._showing = showing

    # --- edits ---

    def _preset_chosen(self, _index: int) -> None:
        name = self.preset.currentText()
        if name in PRESETS:
            chosen = dataclasses.replace(PRESETS[name], max_tokens=self._values.max_tokens, seed=self._values.seed)
            self._show_values(chosen)
            self._edited()

    def _number_edited(self) -> None:
        if self._showing:
            return
        self._values = dataclasses.replace(
            self._values, temperature=round(self.temperature.value(), 2), top_p=round(self.top_p.value(), 2),
            top_k=self.top_k.value(), repeat_penalty=round(self.repeat_penalty.value(), 2),
            max_tokens=self.max_tokens.value())
        self._showing = True
        self.preset.setCurrentText(preset_name(self._values))
        self._showing = False
        self._edited()

    def _edited(self) -> None:
        if not self._showing:
            self._save_timer.start()

    def _emit(self) -> None:
        self.changed.emit(self.system_prompt.toPlainText(), self.preset.currentText(), self._values)

    def number_fields(self):
        return (self.temperature, self.top_p, self.top_k, self.repeat_penalty, self.max_tokens)


def _spin(box, name: str, low: float, high: float, step: float, *, decimals: int | None = None):
    box.setRange(low, high)
    box.setSingleStep(step)
    if decimals is not None:
        box.setDecimals(decimals)
    box.setAccessibleName(name)
    box.setKeyboardTracking(False)
    return box
