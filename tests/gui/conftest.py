import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(autouse=True)
def restore_look(qapp):
    """Themes change the whole application: put its look back after each test, whichever test changed it."""
    sheet, palette = qapp.styleSheet(), qapp.palette()
    yield
    qapp.setStyleSheet(sheet)
    qapp.setPalette(palette)
    qapp.setProperty("llamadeskTheme", None)
    qapp.setProperty("llamadeskLook", None)
