"""The chat and the memory dashboard in the dark look (offscreen): their own colours follow the app's theme,
live, and stay readable (WCAG contrast >= 4.5 for text)."""
from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint
from PySide6.QtGui import QColor, QTextCharFormat, QTextFrame, QTextTable

from core.monitor.samples import GpuMemory, MemorySample
from core.chat.store import ChatStore
from desktop import theme
from desktop.chat.workspace import ChatWorkspace
from desktop.engine_session import EngineSession
from desktop.monitor.dashboard import MemoryDashboard
from desktop.widgets.stacked_bar import EMPTY_COLOR, BarPart, MemoryBarSection, legend_html

GIB, MIB = 2**30, 2**20
CODE = "def reverse(text: str) -> str:\n    # a comment\n    return text[::-1]  # 42\nprint(reverse('hi'), None, True)"
ANSWER = f"Use **slicing**, see [docs](https://docs.python.org):\n\n```python\n{CODE}\n```\n\nThat prints `ih`."


# --------------------------------------------------------------------------------------------
# helpers


def luminance(colour: QColor) -> float:
    def channel(value: float) -> float:
        return value / 12.92 if value <= 0.03928 else ((value + 0.055) / 1.055) ** 2.4
    return 0.2126 * channel(colour.redF()) + 0.7152 * channel(colour.greenF()) + 0.0722 * channel(colour.blueF())


def contrast(a: QColor, b: QColor) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def is_dark(colour: QColor) -> bool:
    return luminance(colour) < 0.1


@pytest.fixture
def store(tmp_path):
    store = ChatStore(tmp_path / "chats.sqlite3")
    conversation = store.create_conversation(title="Reverse a string")
    store.add_message(conversation.id, "user", "How do I reverse a string in Python?")
    store.add_message(conversation.id, "assistant", ANSWER)
    yield store
    store.close()


@pytest.fixture
def workspace(qtbot, store):
    session = EngineSession()
    workspace = ChatWorkspace(session, store)
    qtbot.addWidget(workspace)
    workspace.resize(1000, 650)
    workspace.show()
    settle(qtbot, workspace)
    yield workspace
    session.shutdown()


def settle(qtbot, workspace: ChatWorkspace) -> None:
    qtbot.waitUntil(lambda: workspace.conversation is not None and workspace.queue.idle
                    and len(workspace.pane.view.views) == 2 and not workspace.pane.view.rendering, timeout=5000)


def message_frames(workspace: ChatWorkspace) -> list[QTextFrame]:
    return [frame for frame in workspace.pane.view.document().rootFrame().childFrames()
            if not isinstance(frame, QTextTable)]


def text_runs(frame: QTextFrame) -> list[tuple[str, QTextCharFormat]]:
    """(text, format) of every fragment in the frame, code blocks included."""
    runs = []
    block = frame.firstCursorPosition().block()
    while block.isValid() and block.position() < frame.lastPosition():
        iterator = block.begin()
        while not iterator.atEnd():
            fragment = iterator.fragment()
            if fragment.text().strip():
                runs.append((fragment.text(), fragment.charFormat()))
            iterator += 1
        block = block.next()
    return runs


def foreground(char_format: QTextCharFormat, workspace: ChatWorkspace) -> QColor:
    """The colour the text is drawn in: its own, or (none set) the view's palette text colour."""
    if char_format.hasProperty(QTextCharFormat.Property.ForegroundBrush):
        return char_format.foreground().color()
    return workspace.pane.view.palette().text().color()


def code_tables(frame: QTextFrame) -> list[QTextTable]:
    return [child for child in frame.childFrames() if isinstance(child, QTextTable)]


def pixel(widget, x: int, y: int) -> QColor:
    """The colour shown at (x, y) of `widget`, grabbed from its window (a transparent widget shows what is
    behind it)."""
    window = widget.window()
    point = widget.mapTo(window, QPoint(x, y))
    return window.grab().toImage().pixelColor(point)


def assert_readable(workspace: ChatWorkspace, dark: bool) -> None:
    user, assistant = message_frames(workspace)
    for frame in (user, assistant):
        bubble = frame.frameFormat().background().color()
        assert is_dark(bubble) == dark, bubble.name()
        for text, char_format in text_runs(frame):
            background = bubble
            in_code = [t for t in code_tables(frame) if t.firstPosition() <= _position(frame, text) <= t.lastPosition()]
            if in_code:
                background = in_code[0].format().background().color()
            colour = foreground(char_format, workspace)
            # The light look's Pygments style ("friendly") has paler tokens; none may come near invisible.
            least = 4.5 if dark or not in_code else 2.5
            assert contrast(colour, background) >= least, (text, colour.name(), background.name())
    [code] = code_tables(assistant)
    assert is_dark(code.format().background().color()) == dark


def _position(frame: QTextFrame, text: str) -> int:
    return frame.document().find(text, frame.firstPosition()).selectionStart()


# --------------------------------------------------------------------------------------------
# the chat


def test_dark_chat_messages_and_code_are_dark_and_readable(qtbot, qapp, store):
    theme.apply_theme(qapp, "dark")
    session = EngineSession()
    workspace = ChatWorkspace(session, store)
    qtbot.addWidget(workspace)
    workspace.resize(1000, 650)
    workspace.show()
    try:
        settle(qtbot, workspace)
        assert_readable(workspace, dark=True)
        user_text = [colour for text, fmt in text_runs(message_frames(workspace)[0])
                     if "reverse a string" in text for colour in [foreground(fmt, workspace)]]
        assert user_text and not is_dark(user_text[0])
        assert workspace.pane.view.look == "dark"
    finally:
        session.shutdown()


def test_switching_light_dark_light_draws_the_chat_again(qtbot, qapp, workspace):
    theme.apply_theme(qapp, "light")
    settle(qtbot, workspace)
    assert_readable(workspace, dark=False)
    theme.apply_theme(qapp, "dark")
    settle(qtbot, workspace)
    assert_readable(workspace, dark=True)
    assert [view.role for view in workspace.pane.view.views] == ["user", "assistant"]
    assert "return text[::-1]" in workspace.pane.view.toPlainText()
    theme.apply_theme(qapp, "light")
    settle(qtbot, workspace)
    assert_readable(workspace, dark=False)


def test_dark_chat_list_pane_and_title_are_dark_with_light_text(qtbot, qapp, workspace):
    theme.apply_theme(qapp, "dark")
    qtbot.wait(10)
    listing = workspace.conversations.list
    assert is_dark(pixel(listing, listing.width() // 2, listing.height() - 5))
    assert is_dark(pixel(workspace.pane, 3, 3))
    assert is_dark(pixel(workspace.pane.view, workspace.pane.view.width() // 2, workspace.pane.view.height() - 5))
    title = workspace.pane.title
    assert not is_dark(title.palette().windowText().color())
    button = workspace.pane.settings_toggle
    assert is_dark(pixel(button, 4, button.height() // 2))
    theme.apply_theme(qapp, "light")
    qtbot.wait(10)
    assert not is_dark(pixel(listing, listing.width() // 2, listing.height() - 5))


def test_a_hint_is_drawn_again_in_the_new_look(qtbot, qapp, workspace):
    workspace.pane.view.show_hint("Open a model to start chatting.")
    theme.apply_theme(qapp, "dark")
    assert workspace.pane.view.toPlainText().strip() == "Open a model to start chatting."
    theme.apply_theme(qapp, "light")
    assert workspace.pane.view.toPlainText().strip() == "Open a model to start chatting."


# --------------------------------------------------------------------------------------------
# the dashboard


def feed(dashboard: MemoryDashboard) -> None:
    gpus = (GpuMemory(0, "NVIDIA GeForce RTX 4090", int(15.4 * GIB), 24 * GIB, int(14.1 * GIB), 87.0),)
    for second in range(30):
        dashboard.show_sample(MemorySample(timestamp=1_700_000_000.0 + second, host_used_bytes=20 * GIB,
                                           host_total_bytes=64 * GIB, app_resident_bytes=300 * MIB,
                                           engine_resident_bytes=5 * GIB, gpus=gpus, cpu_percent=42.0))


@pytest.fixture
def dashboard(qtbot):
    widget = MemoryDashboard()
    qtbot.addWidget(widget)
    widget.resize(440, 1000)
    widget.show()
    feed(widget)
    return widget


def test_dark_dashboard_background_charts_and_bars_are_dark(qtbot, qapp, dashboard):
    theme.apply_theme(qapp, "dark")
    qtbot.wait(10)
    assert is_dark(pixel(dashboard, 3, 3))
    chart = dashboard.ram_chart
    background = chart.chart().backgroundBrush().color()
    assert is_dark(background)
    for axis in (chart.time_axis, chart.value_axis):
        assert contrast(axis.labelsColor(), background) >= 4.5
    assert contrast(chart.chart().titleBrush().color(), background) >= 4.5
    assert is_dark(pixel(chart, 3, chart.height() // 2))
    bar = dashboard.host_section.bar
    free_pixel = pixel(bar, bar.width() - 4, bar.height() // 2)  # the Free part is last
    assert is_dark(free_pixel)
    assert dashboard.look == "dark"
    theme.apply_theme(qapp, "light")
    qtbot.wait(10)
    assert not is_dark(pixel(dashboard, 3, 3))
    assert not is_dark(chart.chart().backgroundBrush().color())
    assert not is_dark(pixel(bar, bar.width() - 4, bar.height() // 2))


def test_bar_legend_muted_text_is_readable_in_both_looks(qtbot, qapp):
    parts = [BarPart("Engine", 5 * GIB, "#2f6fdb", dark=True), BarPart("Free", 3 * GIB, EMPTY_COLOR)]
    section = MemoryBarSection("Host RAM", "Host RAM")
    qtbot.addWidget(section)
    section.show_parts(parts)
    assert contrast(QColor(_muted(section.legend.text())), QColor("#ffffff")) >= 4.5
    theme.apply_theme(qapp, "dark")
    assert contrast(QColor(_muted(section.legend.text())), QColor("#1e2227")) >= 4.5
    section.show_parts(parts[:1])
    assert contrast(QColor(_muted(section.legend.text())), QColor("#1e2227")) >= 4.5
    theme.apply_theme(qapp, "light")
    section.show()  # one never shown may miss the change: it catches up when shown
    assert contrast(QColor(_muted(section.legend.text())), QColor("#ffffff")) >= 4.5
    assert _muted(legend_html(parts, "dark")) != _muted(legend_html(parts, "light"))


def _muted(html: str) -> str:
    """The colour of the legend's share figures ('(63 %)')."""
    marker = '<span style="color:'
    start = html.index(marker, html.index("&#9632;") + 1) + len(marker)
    return html[start:start + 7]
