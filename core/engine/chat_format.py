"""Turning a list of chat messages into the prompt text a model was trained on.

The template is the model's own (GGUF `tokenizer.chat_template`, a Hugging Face Jinja template),
rendered in jinja2's immutable sandbox so a hostile model file cannot reach Python objects. Models
without one get ChatML, the most widely understood format.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Sequence

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

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


class ChatTemplateError(ValueError):
    """The template could not render these messages (e.g. it demands alternating roles)."""


class _GenerationTag(jinja2.ext.Extension):
    """Hugging Face's `{% generation %}...{% endgeneration %}` marks training spans; render the body."""

    tags = {"generation"}

    def parse(self, parser):
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _raise_exception(message: str) -> None:
    raise ChatTemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@dataclass(frozen=True)
class ChatTemplate:
    """A compiled chat template plus the special-token texts it may refer to."""

    source: str                  # MODEL_SOURCE or FALLBACK_SOURCE
    text: str
    bos_token: str = ""
    eos_token: str = ""

    @classmethod
    def for_model(cls, template: str | None, *, bos_token: str, eos_token: str) -> "ChatTemplate":
        if template and template.strip():
            try:
                _compile(template)
                return cls(MODEL_SOURCE, template, bos_token, eos_token)
            except ChatTemplateError as error:
                log.warning("%s; using ChatML instead", error)
        return cls(FALLBACK_SOURCE, CHATML_TEMPLATE, bos_token, eos_token)

    @property
    def is_fallback(self) -> bool:
        return self.source == FALLBACK_SOURCE

    def render(self, messages: Sequence[dict], *, add_generation_prompt: bool = True) -> str:
        try:
            return _compile(self.text).render(
                messages=[dict(message) for message in messages],
                bos_token=self.bos_token,
                eos_token=self.eos_token,
                add_generation_prompt=add_generation_prompt,
                raise_exception=_raise_exception,
                strftime_now=_strftime_now,
                tools=None,
                functions=None,
            )
        except ChatTemplateError:
            raise
        except jinja2.TemplateError as error:
            raise ChatTemplateError(f"The model's chat template failed: {error}") from error


_compiled: dict[str, jinja2.Template] = {}


def _compile(text: str) -> jinja2.Template:
    template = _compiled.get(text)
    if template is None:
        environment = ImmutableSandboxedEnvironment(
            loader=jinja2.BaseLoader(), trim_blocks=True, lstrip_blocks=True,
            extensions=[_GenerationTag, jinja2.ext.loopcontrols])
        environment.filters["tojson"] = _tojson
        try:
            template = environment.from_string(text)
        except jinja2.TemplateError as error:
            raise ChatTemplateError(f"The model's chat template does not parse: {error}") from error
        _compiled[text] = template
    return template
