"""The installed Qt binding must not lose references to Python's None (PySide6 6.12.0 on Python 3.11
does, on every Qt call returning void, and the app aborts after a few thousand UI updates)."""
import sys

from PySide6.QtWidgets import QLabel


def test_updating_a_widget_many_times_keeps_none_alive(qtbot):
    label = QLabel()
    qtbot.addWidget(label)
    before = sys.getrefcount(None)
    for index in range(5000):
        label.setText(str(index))
    assert sys.getrefcount(None) >= before - 50
