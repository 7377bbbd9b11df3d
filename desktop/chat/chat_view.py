"""The conversation as one rich-text document (a QTextBrowser): one frame per message.

Opening a long chat renders it in slices of a few milliseconds each, so the window never stalls. A
streaming answer is drawn at most STREAM_FPS times a second, not per token, and then only from its last
Markdown block on (the blocks before it are final; a link definition arriving later redraws from the first
block that uses it); its Markdown is read again from there too. Its thinking streams the same way: new
thinking is appended where the drawn thinking ends, and the frame is drawn whole only when the thinking block
changes its title ("Thinking…" becomes "Thought for 3 s"), opens or closes, or a tool call arrives.
`update_thread` draws again only from the first message that changed (a new branch, an edit, a finished
answer). Clicking an action link emits `action(name, message_id)`; Copy (the answer, never its thinking) and
"Copy code" go to the clipboard here, and the thinking link opens or closes that message's thinking (Tab
reaches it, Enter presses it). A streaming answer's thinking is open while only thinking has arrived; a
finished one is closed until opened.

Colours follow the application's look (desktop/theme.py): when it changes, the messages shown are drawn
again in the new look's colours.

An attached image shows as a placeholder of its size until its thumbnail has been decoded off the UI thread
(desktop/chat/thumbnails.py); then the picture replaces it in place.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from PySide6.QtCore import Qt, QTimer, QUrl, Signal
from PySide6.QtGui import (QColor, QGuiApplication, QImage, QTextBlockFormat, QTextCharFormat, QTextCursor,
                           QTextDocument, QTextFrame)
from PySide6.QtWidgets import QTextBrowser

from desktop.chat.markdown_blocks import Block, GrowingBlocks
from desktop.chat.message_views import MessageView
from desktop import theme
from desktop.chat.message_writer import MessageWriter
from desktop.chat.thumbnails import shared_thumbnails

STREAM_FPS = 15
SLICE_BUDGET_S = 0.005      # rendering work per event-loop turn while opening a long chat
FOLLOW_SLACK_PX = 48        # "at the bottom" if this close: new text keeps the view scrolled down
MAX_TEXT_WIDTH = 900        # a readable column, centred; wider windows do not re-wrap the text
REWRAP_DELAY_MS = 150       # re-wrap once the window stops changing size, not on every step of a drag


def thumbnail_resource(path: str) -> str:
    """The name MessageWriter gives an attached image's thumbnail in the document."""
    return f"thumbnail:{path}"


def _flatten_first_block(document) -> None:
    """Qt keeps an empty paragraph before the first frame; make it 1 px high so the chat starts at the top."""
    flat = QTextBlockFormat()
    flat.setLineHeight(1, QTextBlockFormat.LineHeightTypes.FixedHeight.value)
    cursor = QTextCursor(document)
    cursor.setBlockFormat(flat)


@dataclass(frozen=True)
class _ThinkingDrawn:
    """The streaming answer's thinking block as drawn."""

    note: str
    opened: bool
    tool_calls: tuple
    reasoning: str
    end: int | None             # where the shown thinking text ends (None: closed or none)

    def matches(self, view: MessageView, opened: bool) -> bool:
        """Whether `view` needs no more than thinking appended (and its answer blocks) to be drawn."""
        return ((self.note, self.opened, self.tool_calls) == (view.thinking_note, opened, view.tool_calls)
                and view.reasoning.startswith(self.reasoning))


@dataclass
class _StreamTail:
    """The streaming answer as drawn: its thinking block, its final blocks, the document position where each
    ends and how many code blocks (for Copy) the answer has up to there; what follows the last final block is
    drawn again."""

    message_id: str
    start: int                  # where the first block begins, after the speaker's name, thinking and tool calls
    thinking: _ThinkingDrawn
    final: list[Block] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    code_counts: list[int] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)

    def shift(self, by: int) -> None:
        """Text was inserted before the answer's blocks (more thinking): they moved `by` positions."""
        self.start += by
        self.ends = [end + by for end in self.ends]

    @property
    def position(self) -> int:
        return self.ends[-1] if self.ends else self.start

    def keep_unchanged(self, blocks: list[Block]) -> None:
        """Forget the final blocks from the first one `blocks` no longer begins with (a link definition
        that arrived, a finished text that differs); the last of `blocks` is always drawn again."""
        kept = 0
        while kept < min(len(self.final), len(blocks) - 1) and blocks[kept] == self.final[kept]:
            kept += 1
        del self.final[kept:], self.ends[kept:], self.code_counts[kept:]
        del self.codes[self.code_counts[-1] if self.code_counts else 0:]

    def add(self, block: Block, end: int, codes: list[str]) -> None:
        self.final.append(block)
        self.ends.append(end)
        self.codes += codes
        self.code_counts.append(len(self.codes))


class ChatView(theme.FollowsLook, QTextBrowser):
    action = Signal(str, str)          # action name ("edit", "regenerate", "previous", "next"), message id
    copied = Signal(str)               # what was put on the clipboard: "message" | "code"

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("chatView")
        self.setAccessibleName("Conversation")
        self.setAccessibleDescription("The messages of this chat. Tab moves between the links under each message.")
        self.setOpenLinks(False)
        self.anchorClicked.connect(self._link_clicked)
        self.document().setDocumentMargin(16)
        self.setLineWrapMode(QTextBrowser.LineWrapMode.FixedPixelWidth)
        self.setLineWrapColumnOrWidth(MAX_TEXT_WIDTH)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._rewrap_timer = QTimer(self, singleShot=True, interval=REWRAP_DELAY_MS)
        self._rewrap_timer.timeout.connect(self._rewrap)
        self._writer = MessageWriter(self.font(), theme.look_now())
        self._hint: str | None = None
        self._views: list[MessageView] = []
        self._frames: list[QTextFrame] = []
        self._codes: dict[str, list[str]] = {}
        self._queue: list[MessageView] = []
        self._slicer = QTimer(self, singleShot=True, interval=0)
        self._slicer.timeout.connect(self._render_slice)
        self._stream_timer = QTimer(self, interval=1000 // STREAM_FPS)
        self._stream_timer.timeout.connect(self._render_stream)
        self._stream_view: MessageView | None = None
        self._tail: _StreamTail | None = None
        self._growing = GrowingBlocks()     # the streaming answer's blocks, read again from its last block on
        self._thinking_choice: dict[str, bool] = {}   # message id -> opened (True) or closed by the user
        shared_thumbnails().ready.connect(self._thumbnail_arrived)

    # --- what is shown ---

    @property
    def views(self) -> list[MessageView]:
        return list(self._views)

    @property
    def rendering(self) -> bool:
        """True while a long chat is still being laid out slice by slice."""
        return bool(self._queue)

    @property
    def look(self) -> str:
        """The look the messages are drawn in ("light" | "dark")."""
        return self._writer.look

    def show_hint(self, text: str) -> None:
        """An empty chat: a muted line instead of messages."""
        self._reset()
        self._hint = text
        hint = QTextCharFormat()
        hint.setForeground(QColor(self._writer.colours.muted))
        centred = QTextBlockFormat()
        centred.setAlignment(Qt.AlignmentFlag.AlignCenter)
        centred.setTopMargin(40)
        cursor = QTextCursor(self.document())
        cursor.setBlockFormat(centred)
        cursor.insertText(text, hint)

    def show_thread(self, views: list[MessageView]) -> None:
        self._reset()
        self._queue = list(views)
        self._render_slice()

    def update_thread(self, views: list[MessageView]) -> None:
        """Show `views` (the whole visible thread), drawing again only from the first message that changed.
        A finished answer that was streaming gets only its last block and its footer drawn."""
        self._cancel_stream()
        self._finish_rendering()
        if not self._views:
            self.show_thread(views)
            return
        old = self._views
        first = next((i for i, (a, b) in enumerate(zip(old, views)) if a != b), min(len(old), len(views)))
        if first == len(old) == len(views):
            return
        if first == len(old) - 1 == len(views) - 1 and old[first].id == views[first].id:
            self._redraw_tail(first, views[first])
            self._tail = None
            return
        self._remove_from(first)
        self._queue = list(views[first:])
        self._render_slice()

    # --- streaming ---

    def stream(self, view: MessageView) -> None:
        """The last message's newest text; drawn on the next frame tick."""
        self._stream_view = view
        if not self._stream_timer.isActive():
            self._stream_timer.start()

    def _cancel_stream(self) -> None:
        self._stream_timer.stop()
        self._stream_view = None

    def _render_stream(self) -> None:
        view, self._stream_view = self._stream_view, None
        if view is None:
            self._stream_timer.stop()
        elif self._views and self._views[-1].id == view.id and not self._queue:
            self._redraw_tail(len(self._views) - 1, view)

    def _redraw_tail(self, index: int, view: MessageView) -> None:
        """Draw again only what changed: new thinking, the blocks after the last one still final, the footer."""
        following = self._at_bottom()
        blocks = self._growing.split(view.text)
        tail = self._tail
        opened = self.thinking_open(view)
        cursor = QTextCursor(self.document())
        cursor.beginEditBlock()
        if tail is None or tail.message_id != view.id or not tail.thinking.matches(view, opened):
            self._clear_frame(cursor, self._frames[index])
            self._writer.write_heading(cursor, view)
            end = self._writer.write_thinking(cursor, view, opened)
            self._writer.write_tool_calls(cursor, view)
            drawn = _ThinkingDrawn(view.thinking_note, opened, view.tool_calls, view.reasoning, end)
            tail = self._tail = _StreamTail(view.id, cursor.position(), drawn)
        else:
            self._append_thinking(cursor, tail, view)
            tail.keep_unchanged(blocks)
            cursor.setPosition(tail.position)
            cursor.setPosition(self._frames[index].lastPosition(), QTextCursor.MoveMode.KeepAnchor)
            cursor.removeSelectedText()
        for block in blocks[len(tail.final):-1]:
            codes = self._writer.write_blocks(cursor, view, [block], len(tail.codes))
            tail.add(block, cursor.position(), codes)
        last_codes = self._writer.write_blocks(cursor, view, blocks[-1:], len(tail.codes))
        self._writer.write_footer(cursor, view)
        cursor.endEditBlock()
        self._codes[view.id] = tail.codes + last_codes
        self._views[index] = view
        if following:
            self._scroll_to_end()

    def _append_thinking(self, cursor: QTextCursor, tail: _StreamTail, view: MessageView) -> None:
        drawn = tail.thinking
        added = view.reasoning[len(drawn.reasoning):]
        if not added:
            return
        end = drawn.end
        if end is not None:            # shown: the new thinking goes where the shown text ends
            cursor.setPosition(end)
            cursor.insertText(added, self._writer.thinking)
            tail.shift(cursor.position() - end)
            end = cursor.position()
        tail.thinking = _ThinkingDrawn(drawn.note, drawn.opened, drawn.tool_calls, view.reasoning, end)

    # --- thinking ---

    def thinking_open(self, view: MessageView) -> bool:
        """Whether the message's thinking is shown: the user's choice, else open only while it is all there is."""
        return self._thinking_choice.get(view.id, view.still_thinking)

    def toggle_thinking(self, message_id: str) -> None:
        """Open or close a message's thinking (the thinking link, clicked or pressed with Enter)."""
        index = next((i for i, v in enumerate(self._views) if v.id == message_id), None)
        if index is None:
            return
        view = self._views[index]
        pending = self._stream_view
        if pending is not None and pending.id == message_id:
            view = pending
        self._thinking_choice[message_id] = not self.thinking_open(view)
        if self._tail is not None and self._tail.message_id == message_id:
            self._redraw_tail(index, view)
            return
        self._redraw_message(index)

    # --- thumbnails ---

    def _thumbnail_arrived(self, path: str) -> None:
        """Put the decoded thumbnail where its placeholder is, in each message shown with that image."""
        showing = [i for i, view in enumerate(self._views) if any(a.path == path for a in view.attachments)]
        image = shared_thumbnails().decoded(path)
        if not showing or image is None:
            return
        document = self.document()
        url = QUrl(thumbnail_resource(path))
        drawn = document.resource(QTextDocument.ResourceType.ImageResource, url)
        if not isinstance(drawn, QImage) or drawn.size() != image.size():   # a format whose header gave no size
            for index in showing:
                self._redraw_message(index)
            return
        document.addResource(QTextDocument.ResourceType.ImageResource, url, image)
        for index in showing:
            frame = self._frames[index]
            document.markContentsDirty(frame.firstPosition(), frame.lastPosition() - frame.firstPosition())

    def _redraw_message(self, index: int) -> None:
        self._tail = None              # a streaming answer below moved: its next tick draws it whole
        view = self._views[index]
        cursor = QTextCursor(self.document())
        cursor.beginEditBlock()
        self._clear_frame(cursor, self._frames[index])
        self._codes[view.id] = self._writer.write(cursor, view, self.thinking_open(view))
        cursor.endEditBlock()

    # --- the look ---

    def follow_look(self) -> None:
        self.apply_look(theme.look_now())

    def apply_look(self, look: str) -> None:
        """Draw what is shown again in `look`'s colours (nothing to do when it is the look drawn)."""
        if look == self._writer.look:
            return
        self._writer = MessageWriter(self.font(), look)
        pending, hint = self._stream_view, self._hint
        views = self._views + self._queue
        if pending is not None and views and views[-1].id == pending.id:
            views[-1] = pending
        if views:
            self.show_thread(views)
        elif hint is not None:
            self.show_hint(hint)

    def resizeEvent(self, event) -> None:
        following = self._at_bottom()
        super().resizeEvent(event)
        self._rewrap_timer.start()
        if following:
            self._scroll_to_end()

    def _rewrap(self) -> None:
        """Fit the text column to the width (at most MAX_TEXT_WIDTH, centred): one re-layout per resize."""
        following = self._at_bottom()
        available = self.width() - 2 * self.frameWidth() - self.verticalScrollBar().sizeHint().width()
        text_width = max(min(available, MAX_TEXT_WIDTH), 200)
        side = max((available - text_width) // 2, 0)
        self.setViewportMargins(side, 0, side, 0)
        if self.lineWrapColumnOrWidth() != text_width:
            self.setLineWrapColumnOrWidth(text_width)
        if following:
            self._scroll_to_end()

    # --- text of the messages (for Copy and tests) ---

    def message_text(self, message_id: str) -> str:
        return next((v.text for v in self._views if v.id == message_id), "")

    # --- rendering ---

    def _reset(self) -> None:
        self._slicer.stop()
        self._cancel_stream()
        self._tail = None
        self._hint = None
        self._queue = []
        self._views, self._frames, self._codes = [], [], {}
        self.document().clear()
        _flatten_first_block(self.document())

    def _finish_rendering(self) -> None:
        while self._queue:
            self._render_slice()
        self._slicer.stop()

    def _render_slice(self) -> None:
        """Append queued messages for about SLICE_BUDGET_S, as one edit (one re-layout), then yield."""
        started = time.perf_counter()
        cursor = QTextCursor(self.document())
        cursor.beginEditBlock()
        while self._queue and time.perf_counter() - started < SLICE_BUDGET_S:
            self._append(self._queue.pop(0), cursor)
        cursor.endEditBlock()
        if self._queue:
            self._slicer.start()
        self._scroll_to_end()

    def _append(self, view: MessageView, cursor: QTextCursor | None = None) -> None:
        cursor = cursor or QTextCursor(self.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        frame = cursor.insertFrame(self._writer.frame_format(view.role))
        self._codes[view.id] = self._writer.write(cursor, view, self.thinking_open(view))
        self._views.append(view)
        self._frames.append(frame)

    @staticmethod
    def _clear_frame(cursor: QTextCursor, frame: QTextFrame) -> None:
        cursor.setPosition(frame.firstPosition())
        cursor.setPosition(frame.lastPosition(), QTextCursor.MoveMode.KeepAnchor)
        cursor.removeSelectedText()
        cursor.setBlockFormat(QTextBlockFormat())

    def _remove_from(self, index: int) -> None:
        if index >= len(self._frames):
            return
        cursor = QTextCursor(self.document())
        cursor.setPosition(max(self._frames[index].firstPosition() - 1, 0))
        cursor.movePosition(QTextCursor.MoveOperation.End, QTextCursor.MoveMode.KeepAnchor)
        cursor.removeSelectedText()
        del self._frames[index:]
        del self._views[index:]
        self._tail = None

    def _at_bottom(self) -> bool:
        bar = self.verticalScrollBar()
        return bar.value() >= bar.maximum() - FOLLOW_SLACK_PX

    def _scroll_to_end(self) -> None:
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())

    # --- links ---

    def _link_clicked(self, url: QUrl) -> None:
        address = url.toString()
        if not address.startswith("act:"):
            return
        name, _, rest = address[4:].partition("/")
        if name == "copy":
            self._copy(self.message_text(rest), "message")
        elif name == "thinking":
            self.toggle_thinking(rest)
        elif name == "code":
            message_id, _, number = rest.partition("/")
            codes = self._codes.get(message_id, [])
            if number.isdigit() and int(number) < len(codes):
                self._copy(codes[int(number)], "code")
        else:
            self.action.emit(name, rest)

    def _copy(self, text: str, what: str) -> None:
        QGuiApplication.clipboard().setText(text)
        self.copied.emit(what)
