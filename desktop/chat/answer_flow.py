"""One answer at a time, from the question to the stored answer.

`ask` stores the question and an empty answer (ChatStore.begin_answer) off the UI thread, then asks the
engine; each token is appended to the store as it arrives (the store batches the writes), and the finish
writes the engine's final text with its statistics. A cancelled answer is kept, marked stopped; an engine
that dies mid-answer leaves the partial text in the conversation and the store, marked interrupted.
The conversation object in memory is kept in step with the store, using the store's message ids.

Thinking (ReasoningText) and tool calls stream into the answer's own fields, never into its text. The request
carries the conversation's thinking choice as far as the loaded model's template offers one
(`engine_thinking`); the finished answer's stats record how many tokens of earlier thinking the template did
not send again (read from the prompt the engine rendered).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from functools import partial

from PySide6.QtCore import QObject, Signal

from core.chat.attachments.attachment import Attachment, Source
from core.chat.conversation import (Conversation, Message, MessageStats, SamplingValues, ThinkingSetting, ToolCall,
                                    reasoning_left_out)
from core.engine.protocol import AnswerFinished, SamplingSettings, ThinkingChoice, ThinkingSupport
from core.chat.store import ChatStore
from desktop.chat.store_queue import StoreQueue
from desktop.engine_session import EngineSession


@dataclass
class ActiveAnswer:
    conversation: Conversation
    message_id: str
    text: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    thinking_began: float | None = None      # monotonic clock, for "Thought for 3 s" before the stats come
    thinking_seconds: float | None = None    # set when the answer (or a tool call) follows the thinking

    def end_thinking(self) -> None:
        if self.thinking_began is not None and self.thinking_seconds is None:
            self.thinking_seconds = time.monotonic() - self.thinking_began


class AnswerFlow(QObject):
    changed = Signal(object)            # a Conversation whose visible thread changed
    streamed = Signal(object, str)      # Conversation, answer message id: new text arrived
    running_changed = Signal(bool)
    notice = Signal(str, str)           # level, sentence

    def __init__(self, session: EngineSession, store: ChatStore, queue: StoreQueue, parent=None) -> None:
        super().__init__(parent)
        self._session = session
        self._store = store
        self._queue = queue
        self._active: ActiveAnswer | None = None
        self._starting = False
        session.token_arrived.connect(self._token)
        session.reasoning_arrived.connect(self._reasoning)
        session.tool_called.connect(self._tool_called)
        session.context_trimmed.connect(self._trimmed)
        session.answer_finished.connect(self._finished)
        session.answer_failed.connect(self._failed)

    @property
    def running(self) -> bool:
        return self._starting or self._active is not None

    @property
    def active(self) -> ActiveAnswer | None:
        return self._active

    def ask(self, conversation: Conversation, question: str | None, parent_id: str | None, *,
            attachments: tuple[Attachment, ...] = (), chunks: dict | None = None,
            sources: tuple[Source, ...] = ()) -> None:
        """Answer `question` asked under `parent_id`; with no question, answer `parent_id` (the user message)
        again (Regenerate: a new sibling answer). The question's attachments are copied into the chat with it, its
        documents' chunks indexed, and `sources` (the parts chosen) go to the model with it."""
        if self.running:
            return
        self._set_starting(True)
        self._queue.call(_store_turn, self._store, conversation.id, question, parent_id,
                         dict(attachments=attachments, chunks=chunks, sources=sources),
                         done=lambda stored: self._begin(conversation, *stored),
                         failed=self._store_failed)

    def stop(self) -> None:
        if self._active is not None:
            self._session.stop()

    # --- stages ---

    def _begin(self, conversation: Conversation, question: Message | None, answer_id: str,
               answer_parent: str) -> None:
        if question is not None:
            conversation.add("user", question.content, parent_id=question.parent_id, message_id=question.id,
                             attachments=question.attachments, sources=question.sources)
        conversation.add("assistant", "", parent_id=answer_parent, message_id=answer_id)
        self._active = ActiveAnswer(conversation, answer_id)
        self._starting = False
        self.changed.emit(conversation)
        model = self._session.model
        thinking = engine_thinking(conversation.thinking, model.thinking if model else ThinkingSupport())
        self._session.ask(conversation.engine_messages(answer_parent), engine_sampling(conversation.sampling),
                          thinking)

    def _reasoning(self, text: str) -> None:
        answer = self._active
        if answer is None:
            return
        if answer.thinking_began is None:
            answer.thinking_began = time.monotonic()
        answer.reasoning += text
        answer.conversation.update(answer.message_id, reasoning=answer.reasoning)
        self._queue.call(self._store.append_reasoning, answer.message_id, text)
        self.streamed.emit(answer.conversation, answer.message_id)

    def _tool_called(self, call) -> None:
        answer = self._active
        if answer is None:
            return
        answer.end_thinking()
        answer.tool_calls.append(ToolCall.from_engine(call))
        answer.conversation.update(answer.message_id, tool_calls=tuple(answer.tool_calls))
        self.streamed.emit(answer.conversation, answer.message_id)

    def _token(self, text: str) -> None:
        answer = self._active
        if answer is None:
            return
        answer.end_thinking()
        answer.text += text
        answer.conversation.update(answer.message_id, content=answer.text)
        self._queue.call(self._store.append_answer, answer.message_id, text)
        self.streamed.emit(answer.conversation, answer.message_id)

    def _finished(self, finished: AnswerFinished) -> None:
        answer = self._active
        if answer is None:
            return
        stats = MessageStats.from_engine(finished.stats)
        earlier = answer.conversation.path_to(answer.message_id)[:-1]
        stats = dataclasses.replace(stats, earlier_reasoning_left_out=reasoning_left_out(
            earlier, getattr(finished.stats, "prompt", "")))
        calls = tuple(ToolCall.from_engine(call) for call in finished.tool_calls) or tuple(answer.tool_calls)
        self._close(finished.text, stats, stopped=stats.stop_reason == "cancelled",
                    reasoning=finished.reasoning or answer.reasoning, tool_calls=calls)

    def _failed(self, sentence: str, partial: str) -> None:
        if self._active is None:
            self.notice.emit("error", f"The model could not answer: {sentence}")
            return
        active = self._active
        text = partial if len(partial) >= len(active.text) else active.text
        self._close(text, MessageStats(stop_reason="crashed"), stopped=True, reasoning=active.reasoning,
                    tool_calls=tuple(active.tool_calls))
        self.notice.emit("error", f"The engine stopped unexpectedly ({sentence}). The answer so far is kept in "
                                  "the chat, marked interrupted.")

    def _close(self, text: str, stats: MessageStats, *, stopped: bool, reasoning: str,
               tool_calls: tuple[ToolCall, ...]) -> None:
        answer, self._active = self._active, None
        if answer is None:
            return
        answer.conversation.update(answer.message_id, content=text, stopped_early=stopped, stats=stats,
                                   reasoning=reasoning, tool_calls=tool_calls)
        self._queue.call(partial(self._store.finish_answer, answer.message_id, stats, stopped, text=text,
                                 reasoning=reasoning, tool_calls=tool_calls))
        self.changed.emit(answer.conversation)
        self.running_changed.emit(False)

    def _trimmed(self, dropped: int) -> None:
        self.notice.emit("info", f"This chat is longer than the model's context: the {dropped} oldest message(s) "
                                 "were left out of this answer (the system prompt is kept).")

    def _store_failed(self, error: BaseException) -> None:
        self._set_starting(False)
        self.notice.emit("error", f"The message could not be saved, so it was not sent: {error}")

    def _set_starting(self, starting: bool) -> None:
        self._starting = starting
        self.running_changed.emit(self.running)


def _store_turn(store: ChatStore, conversation_id: str, question: str | None,
                parent_id: str | None, attached: dict) -> tuple[Message | None, str, str]:
    """Background: store the question (if any) with what is attached to it and begin its answer; returns (question,
    answer id, its parent)."""
    stored = (store.add_message(conversation_id, "user", question, parent_id, **attached)
              if question is not None else None)
    answer_parent = stored.id if stored else parent_id
    return stored, store.begin_answer(conversation_id, answer_parent), answer_parent


def engine_thinking(setting: ThinkingSetting, support: ThinkingSupport) -> ThinkingChoice:
    """The conversation's thinking choice, as far as the loaded model's template lets a user choose."""
    enabled = setting.enabled if support.can_toggle else None
    effort = setting.effort if setting.effort in support.efforts else None
    return ThinkingChoice(enabled=enabled, effort=effort)


def engine_sampling(values: SamplingValues) -> SamplingSettings:
    return SamplingSettings(temperature=values.temperature, top_p=values.top_p, top_k=values.top_k,
                            min_p=values.min_p, repeat_penalty=values.repeat_penalty, seed=values.seed,
                            max_tokens=values.max_tokens)
