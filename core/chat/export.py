"""Export a conversation as Markdown (the visible thread, for reading) or JSON (every branch, for
import), and import that JSON back, checked strictly: bad input raises ChatImportError naming the field
that is wrong, never anything else.

JSON format "llamadesk.chat", version 3:
    {"format": "llamadesk.chat", "version": 2, "exported_at": "<ISO 8601>",
     "conversation": {"id", "title", "system_prompt", "created_at", "updated_at" (Unix seconds),
                      "preset", "sampling": {temperature, top_p, top_k, min_p, repeat_penalty,
                      max_tokens, seed}, "current_leaf_id", "thinking": {"enabled", "effort"},
                      "messages": [{"id", "parent_id", "role", "content", "stopped_early",
                                    "created_at", "stats": null | {ttft_seconds, ..., reasoning_tokens, ...},
                                    "reasoning", "tool_calls": [{"id", "name", "arguments"}, ...],
                                    "attachments": [{"id", "name", "kind", "tokens", "size_bytes", "used",
                                                     "path" (the file's name only)}, ...],
                                    "sources": [{"attachment_id", "name", "page", "position", "text"}, ...]},
                                   ...]}}
Messages come parents first. Version 1 (before thinking and tool calls) has no "thinking", "reasoning" or
"tool_calls", version 2 no "attachments" or "sources"; both still import. The attached files themselves stay
with the chat on this computer: an imported chat lists them, with the parts of documents its answers used.

Markdown shows an answer's thinking as a quoted "Thinking" section above its text, each tool call as a
"Tool call" line with its arguments in a JSON block, a message's attachments as an "Attached" list and the
document parts an answer was given as its "Sources".
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from datetime import datetime, timezone
from pathlib import Path

from core.chat.attachments.attachment import Attachment, Source
from core.chat.conversation import (ROLES, ChatError, Conversation, Message, MessageStats, SamplingValues,
                                    ThinkingSetting, ToolCall, new_id)

FORMAT_NAME = "llamadesk.chat"
FORMAT_VERSION = 3
MAX_IMPORT_BYTES = 64 * 1024 * 1024

_ROLE_HEADINGS = {"user": "You", "assistant": "Assistant", "system": "System"}


class ChatImportError(ValueError):
    """A chat file that cannot be imported; str() says what is wrong and where."""


# --------------------------------------------------------------------------------------------
# Markdown


def to_markdown(conversation: Conversation) -> str:
    """The visible thread, readable anywhere Markdown is."""
    thread = conversation.messages
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# {conversation.title or 'Untitled chat'}", "",
             f"*Exported from LlamaDesk on {when} · {conversation.preset} sampling · {len(thread)} messages*", ""]
    if conversation.system_prompt.strip():
        quoted = "\n".join(f"> {line}" for line in conversation.system_prompt.strip().splitlines())
        lines += ["> **System prompt**", ">", quoted, ""]
    for message in thread:
        lines += [f"## {_ROLE_HEADINGS[message.role]}", ""]
        lines += _thinking_section(message)
        lines += _tool_call_lines(message)
        if message.content.strip() or not message.tool_calls:
            lines += [message.content.rstrip() or "*(empty)*", ""]
        lines += _attachment_lines(message)
        if message.role == "assistant" and message.parent_id:
            lines += _source_lines(conversation.message(message.parent_id).sources)
        note = _answer_note(message)
        if note:
            lines += [f"*{note}*", ""]
    return "\n".join(lines)


def _thinking_section(message: Message) -> list[str]:
    """The answer's thinking as a quote headed "Thinking", so a reader never takes it for the answer."""
    if not message.reasoning.strip():
        return []
    seconds = message.stats.reasoning_seconds if message.stats else 0.0
    heading = f"> **Thinking** ({seconds:.0f} s)" if seconds >= 1 else "> **Thinking**"
    quoted = [f"> {line}".rstrip() for line in message.reasoning.strip().splitlines()]
    return [heading, ">", *quoted, ""]


_USES = {"whole": "sent whole", "retrieved": "the most relevant parts sent", "image": "image"}


def _attachment_lines(message: Message) -> list[str]:
    if not message.attachments:
        return []
    items = [f"- {a.name} ({a.kind}, {a.tokens:,} tokens, {_USES[a.used]})" if a.kind == "document"
             else f"- {a.name} (image)" for a in message.attachments]
    return ["**Attached**", "", *items, ""]


def _source_lines(sources: tuple[Source, ...]) -> list[str]:
    if not sources:
        return []
    return ["**Sources**", "", *[f"- {source.label}" for source in sources], ""]


def _tool_call_lines(message: Message) -> list[str]:
    lines: list[str] = []
    for call in message.tool_calls:
        lines += [f"**Tool call** `{call.name}`", "", "```json", _readable_arguments(call.arguments), "```", ""]
    return lines


def _readable_arguments(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments), ensure_ascii=False, indent=2)
    except (ValueError, RecursionError):
        return arguments


def _answer_note(message: Message) -> str:
    parts = []
    if message.stats:
        stats = message.stats
        tokens = (f"{stats.completion_tokens} tokens ({stats.reasoning_tokens} thinking, {stats.answer_tokens} "
                  "answer)" if stats.reasoning_tokens else f"{stats.completion_tokens} tokens")
        parts += [tokens, f"{stats.tokens_per_second:.1f} tok/s", f"first token {stats.ttft_seconds * 1000:.0f} ms"]
    if message.stopped_early:
        parts.append("stopped early")
    return " · ".join(parts)


# --------------------------------------------------------------------------------------------
# JSON out


def to_json(conversation: Conversation) -> str:
    """Every branch, with settings and stats, in the versioned format above."""
    document = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "conversation": {
            "id": conversation.id,
            "title": conversation.title,
            "system_prompt": conversation.system_prompt,
            "created_at": conversation.created_at,
            "updated_at": conversation.updated_at,
            "preset": conversation.preset,
            "sampling": conversation.sampling.as_dict(),
            "current_leaf_id": conversation.current_leaf_id,
            "thinking": conversation.thinking.as_dict(),
            "messages": [_message_to_dict(m) for m in conversation.all_messages()],
        },
    }
    return json.dumps(document, ensure_ascii=False, indent=1)


def _message_to_dict(message: Message) -> dict:
    return {"id": message.id, "parent_id": message.parent_id, "role": message.role,
            "content": message.content, "stopped_early": message.stopped_early,
            "created_at": message.created_at, "stats": message.stats.as_dict() if message.stats else None,
            "reasoning": message.reasoning, "tool_calls": [call.as_dict() for call in message.tool_calls],
            "attachments": [attachment.as_dict() for attachment in message.attachments],
            "sources": [source.as_dict() for source in message.sources]}


# --------------------------------------------------------------------------------------------
# JSON in


EXPORTS = {"markdown": (".md", to_markdown), "json": (".json", to_json)}


def export_file_name(conversation: Conversation, kind: str) -> str:
    """A file name for the export, from the chat's title (only letters, digits, spaces and dashes)."""
    stem = re.sub(r"[^\w\- ]+", "", conversation.title).strip()[:60] or "chat"
    return stem + EXPORTS[kind][0]


def write_export(conversation: Conversation, kind: str, path: Path) -> None:
    """Write the conversation as `kind` ("markdown" or "json"); a file already there is replaced whole or not at
    all."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        partial.write_text(EXPORTS[kind][1](conversation), encoding="utf-8")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def read_json_file(path: Path, *, fresh_ids: bool = True) -> Conversation:
    """Import a chat file; every problem (unreadable, too big, not a chat) is a ChatImportError."""
    try:
        size = path.stat().st_size
        if size > MAX_IMPORT_BYTES:
            raise ChatImportError(f"{path.name} is {size / 2**20:.0f} MiB; a chat file is at most "
                                  f"{MAX_IMPORT_BYTES // 2**20} MiB.")
        data = path.read_bytes()
    except OSError as error:
        raise ChatImportError(f"Could not read {path}: {error.strerror or error}.") from error
    return from_json(data, fresh_ids=fresh_ids)


def from_json(data: str | bytes, *, fresh_ids: bool = True) -> Conversation:
    """Parse and check an exported chat. With fresh_ids (the default) the conversation and its
    messages get new ids, so importing the same file twice gives two conversations."""
    document = _parse(data)
    _expect_keys(document, "the file", required={"format", "version", "conversation"},
                 optional={"exported_at"})
    if document["format"] != FORMAT_NAME:
        raise ChatImportError(f"This is not a LlamaDesk chat file (its format is {document['format']!r}).")
    version = document["version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ChatImportError(f"The file's version must be a whole number from 1, not {version!r}.")
    if version > FORMAT_VERSION:
        raise ChatImportError(f"This chat was exported by a newer LlamaDesk (format version {version}; "
                              f"this one reads up to {FORMAT_VERSION}). Update LlamaDesk to import it.")
    conversation = _conversation(document["conversation"], "conversation", version)
    return _with_fresh_ids(conversation) if fresh_ids else conversation


def _parse(data: str | bytes) -> dict:
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise ChatImportError(f"The file is not UTF-8 text (bad byte at position {error.start}).") from None
    try:
        document = json.loads(data)
    except json.JSONDecodeError as error:
        raise ChatImportError(f"The file is not valid JSON: {error.msg} at line {error.lineno}, "
                              f"column {error.colno}.") from None
    except RecursionError:
        raise ChatImportError("The file is not a chat: its JSON is nested far too deeply.") from None
    if not isinstance(document, dict):
        raise ChatImportError(f"The file must hold a JSON object, not {_kind_of(document)}.")
    return document


_CONVERSATION_FIELDS = {"id": str, "title": str, "system_prompt": str, "created_at": float,
                        "updated_at": float, "preset": str, "sampling": dict,
                        "current_leaf_id": (str, None), "messages": list}
_MESSAGE_FIELDS = {"id": str, "parent_id": (str, None), "role": str, "content": str, "stopped_early": bool,
                   "created_at": float, "stats": (dict, None)}
# what each format version added to a conversation and to a message
_ADDED_CONVERSATION_FIELDS = {2: {"thinking": dict}}
_ADDED_MESSAGE_FIELDS = {2: {"reasoning": str, "tool_calls": list}, 3: {"attachments": list, "sources": list}}


def _fields_of(version: int, base: dict, added: dict[int, dict]) -> dict:
    spec = dict(base)
    for since, fields in added.items():
        if version >= since:
            spec.update(fields)
    return spec


def _conversation(value: object, where: str, version: int) -> Conversation:
    fields = _typed_fields(value, where, _fields_of(version, _CONVERSATION_FIELDS, _ADDED_CONVERSATION_FIELDS))
    message_spec = _fields_of(version, _MESSAGE_FIELDS, _ADDED_MESSAGE_FIELDS)
    messages = [_message(item, f"{where}.messages[{index}]", message_spec)
                for index, item in enumerate(fields["messages"])]
    _check_tree(messages, where)
    leaf = fields["current_leaf_id"]
    if leaf is not None and leaf not in {m.id for m in messages}:
        raise ChatImportError(f"{where}.current_leaf_id names {leaf!r}, which is not one of its messages.")
    sampling = _value(SamplingValues.from_dict, fields["sampling"], f"{where}.sampling")
    header = {name: fields[name] for name in
              ("id", "title", "system_prompt", "created_at", "updated_at", "preset", "current_leaf_id")}
    thinking = (_value(ThinkingSetting.from_dict, fields["thinking"], f"{where}.thinking")
                if "thinking" in fields else ThinkingSetting())
    return Conversation.restore(messages, sampling=sampling, thinking=thinking, **header)


def _message(value: object, where: str, spec: dict) -> Message:
    fields = _typed_fields(value, where, spec)
    if fields["role"] not in ROLES:
        raise ChatImportError(f"{where}.role must be one of {', '.join(ROLES)}, not {fields['role']!r}.")
    stats = fields["stats"]
    fields["stats"] = None if stats is None else _value(MessageStats.from_dict, stats, f"{where}.stats")
    if "tool_calls" in fields:
        fields["tool_calls"] = tuple(_value(ToolCall.from_dict, call, f"{where}.tool_calls[{index}]")
                                     for index, call in enumerate(fields["tool_calls"]))
    for name, build in (("attachments", Attachment.from_dict), ("sources", Source.from_dict)):
        if name in fields:
            fields[name] = tuple(_value(build, item, f"{where}.{name}[{index}]")
                                 for index, item in enumerate(fields[name]))
    return Message(**fields)


def _check_tree(messages: list[Message], where: str) -> None:
    seen: set[str] = set()
    for index, message in enumerate(messages):
        if not message.id:
            raise ChatImportError(f"{where}.messages[{index}].id is empty.")
        if message.id in seen:
            raise ChatImportError(f"{where}.messages[{index}].id {message.id!r} is used twice.")
        if message.parent_id is not None and message.parent_id not in seen:
            raise ChatImportError(f"{where}.messages[{index}] answers {message.parent_id!r}, which does not "
                                  "come before it in the file.")
        seen.add(message.id)


def _typed_fields(value: object, where: str, spec: dict) -> dict:
    _expect_keys(value, where, required=set(spec))
    fields = {}
    for name, kinds in spec.items():
        item = value[name]
        if not _is(item, kinds):
            raise ChatImportError(f"{where}.{name} must be {_describe(kinds)}, not {_kind_of(item)}.")
        fields[name] = float(item) if kinds is float else item
    return fields


def _expect_keys(value: object, where: str, *, required: set[str], optional: set[str] = frozenset()) -> None:
    if not isinstance(value, dict):
        raise ChatImportError(f"{where} must be a JSON object, not {_kind_of(value)}.")
    missing = sorted(required - set(value))
    if missing:
        raise ChatImportError(f"{where} lacks {', '.join(missing)}.")
    unknown = sorted(set(value) - required - optional)
    if unknown:
        raise ChatImportError(f"{where} has unknown field(s): {', '.join(map(str, unknown))}.")


def _value(build, raw: object, where: str):
    """Build a value with the domain's own checks; their sentence names the field."""
    if not isinstance(raw, dict):
        raise ChatImportError(f"{where} must be an object, not {_kind_of(raw)}.")
    try:
        return build(raw)
    except (ChatError, TypeError, ValueError) as error:
        raise ChatImportError(f"{where}: {error}") from None


def _is(value: object, kinds) -> bool:
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    for kind in kinds:
        if kind is None and value is None:
            return True
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return math.isfinite(value)
        if kind in (str, bool, dict, list) and type(value) is kind:
            return True
    return False


def _describe(kinds) -> str:
    names = {str: "text", float: "a number", bool: "true or false", dict: "an object", list: "a list",
             None: "null"}
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    return " or ".join(names[kind] for kind in kinds)


def _kind_of(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the text {value[:40]!r}"
    return {dict: "an object", list: "a list"}.get(type(value), type(value).__name__)


def _with_fresh_ids(conversation: Conversation) -> Conversation:
    renamed = {m.id: new_id() for m in conversation.all_messages()}
    attachment_ids = {a.id: new_id() for m in conversation.all_messages() for a in m.attachments}
    messages = [dataclasses.replace(
        m, id=renamed[m.id], parent_id=renamed.get(m.parent_id) if m.parent_id else None,
        attachments=tuple(dataclasses.replace(a, id=attachment_ids[a.id]) for a in m.attachments),
        sources=tuple(dataclasses.replace(s, attachment_id=attachment_ids.get(s.attachment_id, s.attachment_id))
                      for s in m.sources))
        for m in conversation.all_messages()]
    leaf = renamed.get(conversation.current_leaf_id) if conversation.current_leaf_id else None
    return Conversation.restore(
        messages, id=new_id(), title=conversation.title, system_prompt=conversation.system_prompt,
        created_at=conversation.created_at, updated_at=conversation.updated_at, preset=conversation.preset,
        sampling=conversation.sampling, current_leaf_id=leaf, thinking=conversation.thinking)
