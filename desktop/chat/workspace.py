"""The chat workspace: the conversation list beside the open conversation.

API for the main window:

    workspace = ChatWorkspace(session, store)      # store: a ChatStore the window opened off the UI thread
    workspace.notice.connect(lambda level, sentence: ...)   # level "info" | "error"
    workspace.context_raise_requested.connect(lambda n_ctx: ...)   # the tray's "Reload with a 24k context"
    workspace.set_model_ready(True, "SmolLM2-135M")           # enables Send; False while loading / after a crash
    workspace.new_conversation()    # Ctrl+N         workspace.stop()            # Esc
    workspace.focus_composer()
    workspace.new_chat_action, workspace.stop_action  # QActions (Ctrl+N, Esc; window-wide) for a menu
    state = workspace.save_state(); workspace.restore_state(state)   # splitter sizes, settings shown

Every store call runs off the UI thread, in order (StoreQueue); answers stream through AnswerFlow.
It starts on the most recent conversation, or a new one when there is none. Its style rules follow the
app's look (chat.qss light, chat-dark.qss dark; desktop/theme.py), switched live with the theme.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

from PySide6.QtCore import QByteArray, QDataStream, QIODevice, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QHBoxLayout, QMessageBox, QSplitter, QWidget

from core.chat.conversation import Conversation
from core.chat.store import ChatStore, ConversationSummary
from desktop import theme
from desktop.chat import chat_files, code_highlight
from core.engine.context_window import answer_reserve
from core.engine.protocol import ThinkingSupport
from desktop.chat.answer_flow import AnswerFlow, engine_thinking
from desktop.chat.conversation_list import UNTITLED, ConversationList
from desktop.chat.conversation_pane import ConversationPane
from desktop.chat.draft_preparer import DraftPreparer, NextTurn
from desktop.chat.image_dialog import ImageDialog
from desktop.chat.message_views import (answer_sources, earlier_thinking_saved, last_context_use, message_view,
                                        thread_views)
from desktop.chat.pending_attachments import ImagesTooLong, PendingAttachments
from desktop.chat.source_dialog import SourceDialog
from desktop.chat.store_queue import StoreQueue
from desktop.engine_session import EngineSession
from desktop.tasks import Task

STYLE_SHEET = Path(__file__).with_name("chat.qss")
HIGHLIGHT_WARM_UP_DELAY_MS = 4000
READER_WARM_UP_DELAY_MS = 6000     # after the highlighter's: one GIL-heavy start at a time
STYLE_SHEETS = {"light": STYLE_SHEET, "dark": Path(__file__).with_name("chat-dark.qss")}
_STATE_VERSION = 1


class ChatWorkspace(theme.FollowsLook, QWidget):
    notice = Signal(str, str)          # level "info" | "error", a sentence for the notice bar
    context_raise_requested = Signal(int)   # the context the attached documents need: reload the model with it

    def __init__(self, session: EngineSession, store: ChatStore, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("chatWorkspace")
        self.store = store
        self.queue = StoreQueue(self)
        self.session = session
        self.answers = AnswerFlow(session, store, self.queue, self)
        self.conversations = ConversationList()
        self.pane = ConversationPane()
        self.attachments = PendingAttachments(session, self.pane.tray, self)
        self.preparer = DraftPreparer(session.prepare, self._next_turn, self)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.conversation: Conversation | None = None
        self._editing_id: str | None = None
        self._model_name = ""
        self._model_ready = False
        self._search = ""
        self._export_folder = Path.home()
        self._look: str | None = None
        self._lay_out()
        self._connect()
        self._add_shortcuts()
        self._set_focus_order()
        self.follow_look()
        # Compiling Pygments' lexers is ~200 ms of pure Python: in a thread it still takes the GIL from the
        # UI thread, so it waits until the window has finished starting (measured: 170 ms stalls otherwise).
        QTimer.singleShot(HIGHLIGHT_WARM_UP_DELAY_MS, lambda: Task(code_highlight.warm_up).run_in_background())
        # The document reader's worker process: started on the first attach, it stalled the UI 176-302 ms.
        QTimer.singleShot(READER_WARM_UP_DELAY_MS, self, self.attachments.warm_up)
        self._start()

    # --- public API ---

    def set_model_ready(self, ready: bool, model_name: str = "") -> None:
        self._model_ready = ready
        self._model_name = model_name or self._model_name
        self.pane.set_ready(ready)
        if self.conversation is not None and not self.conversation.messages:
            self.pane.view.show_hint(self._empty_hint())

    def new_conversation(self) -> None:
        if self.conversation is not None and not self.conversation.messages:
            self.focus_composer()
            return
        self.queue.call(self.store.create_conversation, done=self._created)

    def stop(self) -> None:
        self.answers.stop()

    def focus_composer(self) -> None:
        self.pane.composer.setFocus(Qt.FocusReason.ShortcutFocusReason)

    def save_state(self) -> QByteArray:
        state = QByteArray()
        stream = QDataStream(state, QIODevice.OpenModeFlag.WriteOnly)
        stream.writeInt32(_STATE_VERSION)
        stream << self.splitter.saveState()
        stream.writeBool(self.pane.settings_toggle.isChecked())
        return state

    def restore_state(self, state: QByteArray) -> None:
        state = QByteArray(state)
        stream = QDataStream(state, QIODevice.OpenModeFlag.ReadOnly)
        if state.isEmpty() or stream.readInt32() != _STATE_VERSION:
            return
        splitter_state = QByteArray()
        stream >> splitter_state
        self.splitter.restoreState(splitter_state)
        self.pane.settings_toggle.setChecked(stream.readBool())

    # --- building ---

    def _lay_out(self) -> None:
        self.splitter.addWidget(self.conversations)
        self.splitter.addWidget(self.pane)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([240, 760])
        self.splitter.setChildrenCollapsible(False)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.splitter)

    def _connect(self) -> None:
        listing, pane, answers = self.conversations, self.pane, self.answers
        listing.chosen.connect(self._open)
        listing.new_requested.connect(self.new_conversation)
        listing.rename_requested.connect(self._rename)
        listing.delete_requested.connect(self._delete)
        listing.search_changed.connect(self._search_changed)
        pane.send_requested.connect(self._send)
        pane.stop_requested.connect(self.stop)
        pane.edit_cancelled.connect(lambda: self._set_editing(None))
        pane.export_requested.connect(self._export)
        pane.import_requested.connect(self._import)
        pane.settings.changed.connect(self._settings_changed)
        pane.files_given.connect(self.attachments.add)
        self.attachments.notice.connect(self.notice)
        pane.tray.raise_requested.connect(self.context_raise_requested)
        self.attachments.changed.connect(lambda: pane.set_attachments_busy(self.attachments.reading))
        pane.thinking.changed.connect(self._thinking_changed)
        self.session.loaded.connect(lambda model: pane.thinking.show_support(model.thinking))
        self.session.loaded.connect(lambda _model: self._refresh_attachment_fit())   # a new context size
        self.session.load_started.connect(lambda _path: pane.thinking.show_support(None))
        if self.session.model is not None:
            pane.thinking.show_support(self.session.model.thinking)
        pane.view.action.connect(self._message_action)
        answers.changed.connect(self._conversation_changed)
        answers.streamed.connect(self._answer_streamed)
        answers.running_changed.connect(pane.set_generating)
        answers.running_changed.connect(lambda running: None if running else self.preparer.schedule())
        pane.composer.textChanged.connect(self.preparer.schedule)
        answers.notice.connect(self.notice)
        self.queue.failed.connect(lambda sentence: self.notice.emit("error", sentence))

    def _add_shortcuts(self) -> None:
        """Ctrl+N and Esc work anywhere in the window; the window may also put these actions in a menu."""
        self.new_chat_action = self._action("New chat", QKeySequence.StandardKey.New, self.new_conversation)
        self.stop_action = self._action("Stop the answer", Qt.Key.Key_Escape, self.stop)
        self.stop_action.setEnabled(False)   # only while answering: Esc keeps its usual meaning otherwise
        self.answers.running_changed.connect(self.stop_action.setEnabled)

    def _action(self, text: str, keys, slot) -> QAction:
        action = QAction(text, self)
        action.setShortcut(QKeySequence(keys))
        action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    def _set_focus_order(self) -> None:
        listing = self.conversations
        chain = [listing.new_button, listing.search, listing.list, listing.rename_button, listing.delete_button,
                 *self.pane.focus_chain()]
        for first, second in zip(chain, chain[1:]):
            QWidget.setTabOrder(first, second)

    def follow_look(self) -> None:
        """The chat's rules in the app's current look; the messages are drawn again in its colours."""
        look = theme.look_now()
        if look == self._look:
            return
        self._look = look
        sheet = STYLE_SHEETS.get(look, STYLE_SHEET)
        self.setStyleSheet(sheet.read_text(encoding="utf-8") if sheet.exists() else "")
        self.pane.view.apply_look(look)

    @property
    def look(self) -> str:
        return self._look or "light"

    def _start(self) -> None:
        self.pane.view.show_hint("Opening your chats…")
        self.queue.call(self.store.list_conversations, done=self._first_listing)

    def _first_listing(self, summaries: list[ConversationSummary]) -> None:
        if summaries:
            self.conversations.show_conversations(summaries, summaries[0].id)
            self._open(summaries[0].id)
        else:
            self.new_conversation()

    # --- conversations ---

    def _open(self, conversation_id: str) -> None:
        active = self.answers.active
        if active is not None and active.conversation.id == conversation_id:
            self._show(active.conversation)
            return
        self.queue.call(self.store.load_conversation, conversation_id, done=self._show)

    def _show(self, conversation: Conversation) -> None:
        self.pane.settings.flush()
        self.conversation = conversation
        self._set_editing(None)
        self.pane.title.setText(conversation.title or UNTITLED)
        self.pane.settings.show_conversation(conversation)
        self.pane.thinking.show_setting(conversation.thinking)
        self.conversations.highlight(conversation.id)
        self._measure_chat(conversation)
        self._render_all()
        self.preparer.schedule()

    def _created(self, conversation: Conversation) -> None:
        self._show(conversation)
        self._refresh_list()
        self.focus_composer()

    def _rename(self, conversation_id: str, title: str) -> None:
        if self.conversation is not None and self.conversation.id == conversation_id:
            self.conversation.title = title
            self.pane.title.setText(title)
        self.queue.call(self.store.rename_conversation, conversation_id, title, done=lambda _: self._refresh_list())

    def _delete(self, conversation_id: str) -> None:
        title = next((t for i, t in zip(self.conversations.ids(), self.conversations.titles())
                      if i == conversation_id), UNTITLED)
        if not self._confirm_delete(title):
            return
        active = self.answers.active
        if active is not None and active.conversation.id == conversation_id:
            self.answers.stop()
        self.queue.call(self.store.delete_conversation, conversation_id,
                        done=lambda _: self._deleted(conversation_id))

    def _confirm_delete(self, title: str) -> bool:
        answer = QMessageBox.question(self, "Delete chat", f"Delete “{title}” and all its messages? "
                                      "This cannot be undone.",
                                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
                                      QMessageBox.StandardButton.Cancel)
        return answer == QMessageBox.StandardButton.Yes

    def _deleted(self, conversation_id: str) -> None:
        if self.conversation is not None and self.conversation.id == conversation_id:
            self.conversation = None
            self.queue.call(self.store.list_conversations, done=self._first_listing)
        else:
            self._refresh_list()

    def _search_changed(self, text: str) -> None:
        self._search = text
        self._refresh_list()

    def _refresh_list(self) -> None:
        current = self.conversation.id if self.conversation else None
        self.queue.call(self.store.list_conversations, self._search,
                        done=lambda summaries: self.conversations.show_conversations(summaries, current))

    def _settings_changed(self, system_prompt: str, preset: str, sampling) -> None:
        conversation = self.conversation
        if conversation is None:
            return
        conversation.system_prompt, conversation.preset, conversation.sampling = system_prompt, preset, sampling
        self.queue.call(partial(self.store.update_conversation, conversation.id, system_prompt=system_prompt,
                                preset=preset, sampling=sampling))
        self._refresh_attachment_fit()            # the answer length is part of what the attachments must fit

    def _thinking_changed(self, setting) -> None:
        conversation = self.conversation
        if conversation is None:
            return
        conversation.thinking = setting
        self.queue.call(partial(self.store.update_conversation, conversation.id, thinking=setting))

    # --- messages ---

    def _send(self, text: str) -> None:
        conversation = self.conversation
        if conversation is None or self.answers.running:
            return
        self.preparer.cancel()
        self.pane.settings.flush()
        parent = self._question_parent(conversation)
        self._set_editing(None)
        if self.attachments.empty:
            self._send_follow_up(conversation, text, parent)
            return
        self._measure_chat(conversation)
        self.pane.set_attachments_busy(True)

        def chosen(attachments, chunks, sources) -> None:
            self.pane.set_attachments_busy(False)
            self.answers.ask(conversation, text, parent, attachments=attachments, chunks=chunks, sources=sources)

        def failed(error: BaseException) -> None:
            self.pane.set_attachments_busy(False)
            self.pane.composer.setPlainText(text)      # nothing was sent and nothing is lost
            if isinstance(error, ImagesTooLong):
                self.notice.emit("error", f"Nothing was sent: {error}.")
            else:
                self.notice.emit("error", f"The documents could not be prepared, so nothing was sent: {error}")

        self.attachments.take(text, chosen, failed)

    def _question_parent(self, conversation: Conversation) -> str | None:
        """Where a question sent now goes: after the edited message's parent, else after the visible thread."""
        return conversation.message(self._editing_id).parent_id if self._editing_id else conversation.current_leaf_id

    def _next_turn(self) -> NextTurn | None:
        """The messages a question sent now would give the engine, the draft as the question (DraftPreparer)."""
        conversation = self.conversation
        if conversation is None or self.answers.running or not self.attachments.empty:
            return None
        messages = conversation.engine_messages(self._question_parent(conversation))
        messages.append({"role": "user", "content": self.pane.composer.toPlainText().strip()})
        model = self.session.model
        return messages, engine_thinking(conversation.thinking, model.thinking if model else ThinkingSupport())

    def _send_follow_up(self, conversation: Conversation, text: str, parent: str | None) -> None:
        """Nothing attached now: the documents attached earlier in this branch are searched again (by words, and by
        meaning where their chunks kept vectors of the library's embedding model) for this
        question when they were too long to send whole (a follow-up may ask about another part of them). Documents
        stored without such vectors get them in the background, for the next follow-up."""
        earlier = conversation.path_to(parent)
        if not any(a.kind == "document" and a.used == "retrieved" for m in earlier for a in m.attachments):
            self.answers.ask(conversation, text, parent)
            return
        self._measure_chat(conversation)
        self.pane.set_attachments_busy(True)

        def found(sources) -> None:
            self.pane.set_attachments_busy(False)
            self.answers.ask(conversation, text, parent, sources=sources)

        self.attachments.follow_up(text, earlier, self.store.stored_chunks(), found, self._keep_vectors)

    def _keep_vectors(self, attachment_id: str, vectors, finished) -> None:
        """Store the vectors a follow-up gave a stored document (on the store's lane), then finished(error or None)."""
        self.queue.call(self.store.add_attachment_vectors, attachment_id, vectors,
                        done=lambda _stored: finished(None), failed=finished)

    def _refresh_attachment_fit(self) -> None:
        if self.conversation is not None:
            self._measure_chat(self.conversation)
            self.attachments.refresh_fit()

    def _measure_chat(self, conversation: Conversation) -> None:
        """What the attachments' fit is measured against: the context the chat fills, the room for the answer."""
        used = last_context_use(conversation)
        self.attachments.chat_tokens = used[0] if used else 0
        model, max_tokens = self.session.model, conversation.sampling.max_tokens
        # the room the engine keeps for the answer, by its own rule (never more than half the context)
        self.attachments.answer_tokens = answer_reserve(model.n_ctx, max_tokens) if model else max_tokens

    def _message_action(self, name: str, message_id: str) -> None:
        conversation = self.conversation
        if name == "source":
            self._open_source(message_id)
            return
        if name == "image":
            self._open_image(message_id)
            return
        if self.answers.running:
            self.notice.emit("info", "Wait for the answer to finish, or press Esc to stop it.")
            return
        if conversation is None:
            return
        if name == "edit":
            self._set_editing(message_id)
        elif name == "regenerate" and not self._model_ready:
            self.notice.emit("info", "Open a model first: a new answer needs a loaded model.")
        elif name == "regenerate":
            self.answers.ask(conversation, None, conversation.message(message_id).parent_id)
        elif name in ("previous", "next"):
            self._switch_branch(message_id, -1 if name == "previous" else 1)

    def _open_source(self, address: str) -> None:
        """address: "<answer id>/<n>": the answer's n-th source, shown with its file's name and page."""
        message_id, _, number = address.partition("/")
        if self.conversation is None or not number.isdigit():
            return
        sources = answer_sources(self.conversation, self.conversation.message(message_id))
        if int(number) < len(sources):
            self.source_dialog = SourceDialog(sources[int(number)], self)
            self.source_dialog.open()

    def _open_image(self, address: str) -> None:
        """address: "<message id>/<n>": the message's n-th attachment, an image, shown whole."""
        message_id, _, number = address.partition("/")
        if self.conversation is None or not number.isdigit():
            return
        attachments = self.conversation.message(message_id).attachments
        if int(number) < len(attachments):
            attachment = attachments[int(number)]
            self.image_dialog = ImageDialog(attachment.path, attachment.name, self)
            self.image_dialog.open()

    def _switch_branch(self, message_id: str, step: int) -> None:
        conversation = self.conversation
        siblings = [m.id for m in conversation.siblings(message_id)]
        target = siblings.index(message_id) + step
        if 0 <= target < len(siblings):
            leaf = conversation.select(siblings[target])
            self.queue.call(self.store.set_current_leaf, conversation.id, leaf.id)
            self._render_changes()

    def _set_editing(self, message_id: str | None) -> None:
        """Edit-and-resend: the message's text goes into the composer; Send makes it a new branch."""
        was_editing, self._editing_id = self._editing_id is not None, message_id
        if message_id is not None and self.conversation is not None:
            self.pane.show_editing(self.conversation.message(message_id).content)
            return
        self.pane.show_editing(None)
        if was_editing:
            self.pane.composer.clear()

    # --- showing answers ---

    def _conversation_changed(self, conversation: Conversation) -> None:
        if conversation is self.conversation:
            self.pane.title.setText(conversation.title or UNTITLED)
            self._render_changes()
        if not self.answers.running:
            self._refresh_list()
        elif conversation.title:
            # The first question titles a new chat while its answer streams: show it in the list now.
            self.conversations.set_title(conversation.id, conversation.title)

    def _answer_streamed(self, conversation: Conversation, message_id: str) -> None:
        if conversation is not self.conversation:
            return
        self.pane.view.stream(message_view(conversation, conversation.message(message_id), streaming=True,
                                           thinking_seconds=self._thinking_seconds()))

    def _render_all(self) -> None:
        conversation = self.conversation
        if not conversation.messages:
            self.pane.view.show_hint(self._empty_hint())
        else:
            self.pane.view.show_thread(thread_views(conversation, self._streaming_id(), self._thinking_seconds()))
        self._show_context_use()

    def _render_changes(self) -> None:
        conversation = self.conversation
        if not conversation.messages:
            self._render_all()
            return
        self.pane.view.update_thread(thread_views(conversation, self._streaming_id(), self._thinking_seconds()))
        self._show_context_use()

    def _show_context_use(self) -> None:
        conversation = self.conversation
        self.pane.context_bar.show_usage(last_context_use(conversation), earlier_thinking_saved(conversation))

    def _streaming_id(self) -> str | None:
        active = self.answers.active
        return active.message_id if active and active.conversation is self.conversation else None

    def _thinking_seconds(self) -> float | None:
        active = self.answers.active
        return active.thinking_seconds if active and active.conversation is self.conversation else None

    def _empty_hint(self) -> str:
        if self._model_ready:
            return f"{self._model_name or 'The model'} is ready. Ask it anything."
        return "Open a model to start chatting."

    # --- files ---

    def _export(self, kind: str) -> None:
        if self.conversation is None:
            return
        path = chat_files.ask_export_path(self, self.conversation, kind, self._export_folder)
        if path is None:
            return
        self._export_folder = path.parent
        chat_files.export_in_background(
            self.conversation, kind, path,
            done=lambda saved: self.notice.emit("info", f"Chat exported to {saved}."),
            failed=lambda error: self.notice.emit("error", f"Could not export the chat: {error}"))

    def _import(self) -> None:
        path = chat_files.ask_import_path(self, self._export_folder)
        if path is None:
            return
        chat_files.import_in_background(
            path, done=self._imported,
            failed=lambda error: self.notice.emit("error", f"Could not import {path.name}: {error}"))

    def _imported(self, conversation: Conversation) -> None:
        def saved(_result) -> None:
            self._show(conversation)
            self._refresh_list()
            self.notice.emit("info", f"Imported “{conversation.title or UNTITLED}”.")
        self.queue.call(self.store.save_conversation, conversation, done=saved)
