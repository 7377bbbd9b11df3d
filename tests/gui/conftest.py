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


def open_main_window(qtbot, *, threads: int = 2, max_tokens: int = 48):
    """The main window shown with its chat in place, answering at most `max_tokens` tokens (close it after)."""
    from core.settings import Settings
    from desktop.main_window import MainWindow

    window = MainWindow(Settings(threads=threads))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.chat is not None, timeout=10_000)
    window.chat.pane.settings.max_tokens.setValue(max_tokens)
    return window


@pytest.fixture
def store(tmp_path):
    """A chat store of the test's own."""
    from core.chat.store import ChatStore

    store = ChatStore(tmp_path / "chats.sqlite3")
    yield store
    store.close()


@pytest.fixture
def session():
    """An engine session (no model loaded), shut down after the test."""
    from desktop.engine_session import EngineSession

    session = EngineSession()
    yield session
    session.shutdown()
