"""Turning a list of chat messages into the prompt text a model was trained on.

The template is the model's own (GGUF `tokenizer.chat_template`, a Hugging Face Jinja template), rendered
by template_renderer in a sandboxed child process with a time and memory budget. Models without one get
ChatML, the most widely understood format.

Templates are given only variables that have a value (many test `tools is defined`), today's date, the
thinking controls they read, and history turns shaped as they expect: the thinking of an earlier answer
goes in under the key the template reads ("reasoning_content" or "thinking") or is left out, and tool-call
arguments are objects. A template that refuses a system message gets it merged into the first user turn.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Callable, Sequence

from core.engine.protocol import ThinkingChoice
from core.engine.template_renderer import (RenderCancelled, TemplateFault, TemplateRenderer,
                                           shared_renderer)

log = logging.getLogger(__name__)

MODEL_SOURCE = "model"
FALLBACK_SOURCE = "fallback (ChatML)"

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Text that ends a turn in ChatML; a model that lacks these as special tokens may spell them out.
CHATML_STOPS = ("<|im_end|>", "<|im_start|>")

_THINKING_VARIABLE = re.compile(r"(?<![\w.'\"\[])thinking\b(?!['\"])")
# firefunction-v2 adds the tools as JSON text and the time as text
_FUNCTIONS_TEXT = re.compile(r"\+\s*functions\b")
_DATETIME_TEXT = re.compile(r"\+\s*datetime\b")
_MESSAGE_THINKING = re.compile(r"""message\.thinking\b|message\[['"]thinking['"]\]|['"]thinking['"] in message""")


class ChatTemplateError(ValueError):
    """The template could not render these messages; str(error) is a sentence naming the model."""


__all__ = ["ChatTemplate", "ChatTemplateError", "RenderCancelled", "RenderedPrompt", "CHATML_STOPS",
           "FALLBACK_SOURCE", "MODEL_SOURCE"]


@dataclass(frozen=True)
class RenderedPrompt:
    text: str
    system_merged: bool = False      # the template refused a system turn: it went into the first user turn


@dataclass(frozen=True)
class TemplateReads:
    """Which optional variables and message keys a template's text refers to."""

    enable_thinking: bool
    thinking: bool
    reasoning_effort: bool
    reasoning_content: bool
    message_thinking: bool
    functions_text: bool
    datetime_text: bool

    @classmethod
    def of(cls, text: str) -> "TemplateReads":
        return cls(enable_thinking="enable_thinking" in text,
                   thinking=bool(_THINKING_VARIABLE.search(text)),
                   reasoning_effort="reasoning_effort" in text,
                   reasoning_content="reasoning_content" in text,
                   message_thinking=bool(_MESSAGE_THINKING.search(text)),
                   functions_text=bool(_FUNCTIONS_TEXT.search(text)),
                   datetime_text=bool(_DATETIME_TEXT.search(text)))


@dataclass(frozen=True)
class ChatTemplate:
    """A checked chat template plus the special-token texts it may refer to."""

    source: str                  # MODEL_SOURCE or FALLBACK_SOURCE
    text: str
    bos_token: str = ""
    eos_token: str = ""
    model_name: str = "the model"
    renderer: TemplateRenderer = field(default_factory=shared_renderer, compare=False, repr=False)
    _refuses_system: list = field(default_factory=list, compare=False, repr=False)   # [True] once seen

    @classmethod
    def for_model(cls, template: str | None, *, bos_token: str, eos_token: str, model_name: str = "the model",
                  renderer: TemplateRenderer | None = None) -> "ChatTemplate":
        renderer = renderer or shared_renderer()
        if template and template.strip():
            try:
                renderer.check(template)
                return cls(MODEL_SOURCE, template, bos_token, eos_token, model_name, renderer)
            except TemplateFault as fault:
                log.warning("the chat template of %s cannot be used (%s); using ChatML instead",
                            model_name, fault.detail)
        return cls(FALLBACK_SOURCE, CHATML_TEMPLATE, bos_token, eos_token, model_name, renderer)

    @property
    def is_fallback(self) -> bool:
        return self.source == FALLBACK_SOURCE

    @property
    def reads(self) -> TemplateReads:
        return TemplateReads.of(self.text)

    def render(self, messages: Sequence[dict], *, add_generation_prompt: bool = True,
               thinking: ThinkingChoice = ThinkingChoice(), tools: Sequence[dict] = (),
               should_stop: Callable[[], bool] | None = None) -> str:
        return self.render_prompt(messages, add_generation_prompt=add_generation_prompt, thinking=thinking,
                                  tools=tools, should_stop=should_stop).text

    def render_prompt(self, messages: Sequence[dict], *, add_generation_prompt: bool = True,
                      thinking: ThinkingChoice = ThinkingChoice(), tools: Sequence[dict] = (),
                      should_stop: Callable[[], bool] | None = None) -> RenderedPrompt:
        """Raises ChatTemplateError (with a sentence naming the model) or RenderCancelled."""
        reads = self.reads
        shaped = [_shape_message(message, reads) for message in messages]
        variables = self._variables(reads, add_generation_prompt, thinking, tools)
        mergeable = len(shaped) > 1 and shaped[0]["role"] == "system" and shaped[1]["role"] == "user"
        if mergeable and self._refuses_system:
            return RenderedPrompt(self._render(_merge_system(shaped), variables, should_stop), True)
        try:
            return RenderedPrompt(self._render(shaped, variables, should_stop))
        except _Refused as refusal:
            if not mergeable:
                raise ChatTemplateError(refusal.sentence) from None
            try:
                prompt = self._render(_merge_system(shaped), variables, should_stop)
            except _Refused:
                raise ChatTemplateError(refusal.sentence) from None
            self._refuses_system.append(True)
            log.info("the chat template of %s takes no system turn: merged into the first user turn",
                     self.model_name)
            return RenderedPrompt(prompt, True)

    def _variables(self, reads: TemplateReads, add_generation_prompt: bool, thinking: ThinkingChoice,
                   tools: Sequence[dict]) -> dict:
        variables = {"bos_token": self.bos_token, "eos_token": self.eos_token,
                     "add_generation_prompt": add_generation_prompt,
                     "date_string": date.today().strftime("%d %b %Y")}
        if tools:
            variables["tools"] = [dict(tool) for tool in tools]
        if reads.functions_text:
            variables["functions"] = json.dumps(list(tools), indent=2, ensure_ascii=False)
        if reads.datetime_text:
            variables["datetime"] = datetime.now().strftime("%b %d %Y %H:%M:%S")
        if thinking.enabled is not None:
            if reads.enable_thinking:
                variables["enable_thinking"] = thinking.enabled
            if reads.thinking:
                variables["thinking"] = thinking.enabled
        if thinking.effort and reads.reasoning_effort:
            variables["reasoning_effort"] = thinking.effort
        return variables

    def _render(self, messages: list[dict], variables: dict, should_stop) -> str:
        try:
            return self.renderer.render(self.text, {**variables, "messages": messages}, should_stop)
        except TemplateFault as fault:
            sentence = f"The chat template of {self.model_name} could not be used: {fault.detail}."
            if fault.raised:
                raise _Refused(sentence) from None
            raise ChatTemplateError(sentence) from None


class _Refused(Exception):
    """The template called raise_exception: these messages are not to its liking."""

    def __init__(self, sentence: str) -> None:
        super().__init__(sentence)
        self.sentence = sentence


def _shape_message(message: dict, reads: TemplateReads) -> dict:
    shaped = {key: value for key, value in message.items() if value is not None}
    shaped.setdefault("content", "")
    reasoning = shaped.pop("reasoning_content", None) or shaped.pop("thinking", None)
    if reasoning:
        if reads.reasoning_content:
            shaped["reasoning_content"] = reasoning
        elif reads.message_thinking:
            shaped["thinking"] = reasoning
    if shaped.get("tool_calls"):
        shaped["tool_calls"] = [_shape_tool_call(call) for call in shaped["tool_calls"]]
    else:
        shaped.pop("tool_calls", None)
    return shaped


def _shape_tool_call(call: dict) -> dict:
    """Templates read `tool_call.function.arguments` as an object (most write it with `tojson`); some
    read the name and arguments at the top level, so both places carry them."""
    function = dict(call.get("function") or call)
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            function["arguments"] = json.loads(arguments)
        except ValueError:
            pass
    shaped = {"id": call.get("id", ""), "type": call.get("type", "function"), "function": function}
    shaped.update(name=function.get("name", ""), arguments=function.get("arguments", {}))
    return shaped


def _merge_system(messages: list[dict]) -> list[dict]:
    system, first, rest = messages[0], messages[1], messages[2:]
    merged = dict(first, content=f"{system['content']}\n\n{first['content']}")
    return [merged, *rest]
