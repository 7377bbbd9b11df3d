"""The ways models write tool calls, and reading them into ToolCall values.

Each syntax is a block the output splitter cuts out of the answer (an opening marker, a closing marker or
the end of the output) and a reader for the block's body. Which syntaxes a model uses is read from its
chat template, which shows the model its own calls in that syntax:

  Qwen / Hermes      <tool_call>{"name": ..., "arguments": {...}}</tool_call>
  Qwen3-Coder        <tool_call><function=NAME><parameter=KEY>VALUE</parameter></function></tool_call>
  GLM 4.5+           <tool_call>NAME<arg_key>KEY</arg_key><arg_value>VALUE</arg_value></tool_call>
  Mistral            [TOOL_CALLS][{"name": ..., "arguments": {...}, "id": ...}]  or  [TOOL_CALLS]NAME[ARGS]{...}
  Llama 3.x          <|python_tag|>{"name": ..., "parameters": {...}}, or the whole answer as that JSON
  DeepSeek V3 / R1   <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME ```json {...}```<｜tool▁call▁end｜>...
  DeepSeek V3.1      <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{...}<｜tool▁call▁end｜>...
  Kimi K2            <|tool_calls_section_begin|><|tool_call_begin|>functions.NAME:0<|tool_call_argument_begin|>{...}<|tool_call_end|>...
  gpt-oss            a commentary channel addressed `to=functions.NAME` (read by the harmony splitter)
"""
from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Callable

from core.engine.protocol import ToolCall


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


def make_call(name: str, arguments, call_id: str | None = None) -> ToolCall:
    """A ToolCall whose arguments are JSON text (an object stays an object; text that is not JSON stays text)."""
    if isinstance(arguments, str):
        text = arguments.strip()
        try:
            arguments = json.loads(text) if text else {}
        except ValueError:
            return ToolCall(call_id or new_call_id(), name.strip(), text)
    return ToolCall(call_id or new_call_id(), name.strip(), json.dumps(arguments, ensure_ascii=False))


# ------------------------------------------------------------------------------------------ readers


def _json_calls(body: str) -> list[ToolCall]:
    """One JSON object or a list of them, each {"name", "arguments" | "parameters", "id"?}."""
    data = json.loads(body.strip())
    items = data if isinstance(data, list) else [data]
    calls = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ValueError("not a call")
        arguments = item.get("arguments", item.get("parameters", {}))
        calls.append(make_call(item["name"], arguments, item.get("id") or None))
    return calls


_FUNCTION = re.compile(r"<function=([^>\s]+)>(.*?)(?:</function>|$)", re.S)
_PARAMETER = re.compile(r"<parameter=([^>\s]+)>\n?(.*?)\n?</parameter>", re.S)
_ARG_PAIR = re.compile(r"<arg_key>(.*?)</arg_key>\s*<arg_value>(.*?)</arg_value>", re.S)


def _xml_value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def read_tool_call_block(body: str) -> list[ToolCall]:
    """The body of a <tool_call> block: JSON (Qwen, Hermes), <function=...> (Qwen3-Coder) or <arg_key> (GLM)."""
    try:
        return _json_calls(body)
    except ValueError:
        pass
    functions = _FUNCTION.findall(body)
    if functions:
        return [make_call(name, {key: _xml_value(value) for key, value in _PARAMETER.findall(inner)})
                for name, inner in functions]
    name, _, rest = body.strip().partition("<arg_key>")
    if re.fullmatch(r"[\w.\-]+", name.strip()):
        pairs = _ARG_PAIR.findall("<arg_key>" + rest) if rest else []
        return [make_call(name, {key.strip(): _xml_value(value) for key, value in pairs})]
    raise ValueError("not a call")


_MISTRAL_NAMED = re.compile(r"\s*([\w.\-]+)(?:\[CALL_ID\]([\w\-]+))?\[ARGS\]", re.S)


def read_mistral_calls(body: str) -> list[ToolCall]:
    calls = []
    for part in filter(str.strip, body.split("[TOOL_CALLS]")):
        named = _MISTRAL_NAMED.match(part)
        if named:
            calls.append(make_call(named.group(1), part[named.end():], named.group(2)))
        else:
            calls.extend(_json_calls(part))
    if not calls:
        raise ValueError("not a call")
    return calls


def read_llama3_calls(body: str) -> list[ToolCall]:
    """`{"name": ..., "parameters": ...}`; several may be joined by ';'."""
    body = body.strip()
    try:
        return _json_calls(body)
    except ValueError:
        return [call for part in body.split(";") if part.strip() for call in _json_calls(part)]


_DEEPSEEK_CALL = re.compile(r"<｜tool▁call▁begin｜>(.*?)<｜tool▁sep｜>(.*?)(?:<｜tool▁call▁end｜>|$)", re.S)
_FENCED = re.compile(r"^\s*([^\n`]*)\s*```(?:json)?\s*(.*?)\s*```\s*$", re.S)


def read_deepseek_calls(body: str) -> list[ToolCall]:
    calls = []
    for head, rest in _DEEPSEEK_CALL.findall(body):
        fenced = _FENCED.match(rest)
        if head.strip() == "function" and fenced:        # V3 / R1: type, then the name and a fenced block
            calls.append(make_call(fenced.group(1), fenced.group(2)))
        else:                                            # V3.1: the name, then the arguments
            calls.append(make_call(head, rest))
    if not calls:
        raise ValueError("not a call")
    return calls


_KIMI_CALL = re.compile(r"<\|tool_call_begin\|>\s*(?:functions\.)?([^:<\s]+)(?::\d+)?\s*"
                        r"<\|tool_call_argument_begin\|>(.*?)(?:<\|tool_call_end\|>|$)", re.S)


def read_kimi_calls(body: str) -> list[ToolCall]:
    calls = [make_call(name, arguments) for name, arguments in _KIMI_CALL.findall(body)]
    if not calls:
        raise ValueError("not a call")
    return calls


# ------------------------------------------------------------------------------------------ syntaxes


@dataclass(frozen=True)
class CallSyntax:
    """A tool-call block: it starts at `opener`, ends at `closer` (None: at the end of the output)."""

    name: str
    opener: str
    closer: str | None
    read: Callable[[str], list[ToolCall]]     # raises ValueError when the body is not a call
    template_mark: str                        # text in a chat template that shows the model uses this
    inner_tokens: tuple[str, ...] = ()        # special tokens inside the block that its reader needs

    @property
    def special_texts(self) -> tuple[str, ...]:
        return (self.opener, *((self.closer,) if self.closer else ()), *self.inner_tokens)


SYNTAXES = (
    CallSyntax("tool_call", "<tool_call>", "</tool_call>", read_tool_call_block, "<tool_call>"),
    CallSyntax("mistral", "[TOOL_CALLS]", None, read_mistral_calls, "[TOOL_CALLS]", ("[ARGS]", "[CALL_ID]")),
    CallSyntax("llama3", "<|python_tag|>", None, read_llama3_calls, "<|python_tag|>"),
    CallSyntax("deepseek", "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", read_deepseek_calls,
               "<｜tool▁calls▁begin｜>", ("<｜tool▁call▁begin｜>", "<｜tool▁sep｜>", "<｜tool▁call▁end｜>")),
    CallSyntax("kimi", "<|tool_calls_section_begin|>", "<|tool_calls_section_end|>", read_kimi_calls,
               "<|tool_calls_section_begin|>",
               ("<|tool_call_begin|>", "<|tool_call_argument_begin|>", "<|tool_call_end|>")),
)


def call_syntaxes(template_text: str) -> tuple[CallSyntax, ...]:
    """The call syntaxes a chat template shows its model."""
    return tuple(syntax for syntax in SYNTAXES if syntax.template_mark in template_text)


def answers_in_bare_json(template_text: str) -> bool:
    """Llama 3.x templates ask for a call as the whole answer, a JSON object with "name" and "parameters"."""
    return '"parameters"' in template_text and "<|eot_id|>" in template_text


def read_bare_json_call(answer: str) -> list[ToolCall] | None:
    """The whole answer as a Llama 3.x call, or None when it is an ordinary answer."""
    text = answer.strip()
    if not (text.startswith("{") and text.endswith("}")):
        return None
    try:
        return read_llama3_calls(text)
    except ValueError:
        return None
