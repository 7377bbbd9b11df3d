"""GBNF grammars that make the model's answer take a shape: a JSON object, a JSON object following a schema
(response_format), or a tool call's JSON (tool_choice "required" or naming a function). The engine applies them
through SamplingSettings.grammar; llama-cpp-python's JSON-schema converter writes them."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from llama_cpp.llama_grammar import json_schema_to_gbnf

ANY_OBJECT: dict[str, Any] = {"type": "object"}


class GrammarError(ValueError):
    """A schema this server cannot turn into a grammar; the message says which and why."""


@dataclass(frozen=True)
class ForcedCall:
    """A tool call the grammar forces. ``name`` is None when the model picks the function (tool_choice
    "required"): its answer is then {"name": ..., "arguments": {...}}; with a name it is the arguments alone."""

    grammar: str
    name: str | None


def schema_grammar(schema: dict[str, Any]) -> str:
    """The grammar for JSON text following ``schema`` (GrammarError for a schema the converter rejects)."""
    try:
        return json_schema_to_gbnf(json.dumps(schema))
    except (AssertionError, KeyError, TypeError, ValueError, RecursionError) as error:
        raise GrammarError(f"The JSON schema cannot be turned into a grammar: {error}") from error


def response_format_grammar(kind: str, schema: dict[str, Any] | None) -> str | None:
    """response_format → grammar: "text" none, "json_object" any object, "json_schema" that schema."""
    if kind == "text":
        return None
    if kind == "json_object":
        return schema_grammar(ANY_OBJECT)
    if not schema:
        raise GrammarError("response_format json_schema needs json_schema.schema.")
    return schema_grammar(schema)


def forced_call(functions: dict[str, dict[str, Any] | None], name: str | None) -> ForcedCall:
    """The grammar for a call of function ``name`` (its parameters schema), or of any of ``functions``."""
    if name is not None:
        if name not in functions:
            raise GrammarError(f"tool_choice names {name!r}, which is not among the tools.")
        return ForcedCall(schema_grammar(functions[name] or ANY_OBJECT), name)
    choices = [{"type": "object",
                "properties": {"name": {"const": function}, "arguments": parameters or ANY_OBJECT},
                "required": ["name", "arguments"]}
               for function, parameters in functions.items()]
    return ForcedCall(schema_grammar(choices[0] if len(choices) == 1 else {"anyOf": choices}), None)


def read_forced_call(forced: ForcedCall, text: str) -> tuple[str, str]:
    """(function name, arguments JSON) from the text a forced call produced; ValueError if it was cut short."""
    value = json.loads(text)
    if forced.name is not None:
        return forced.name, json.dumps(value, ensure_ascii=False)
    return value["name"], json.dumps(value["arguments"], ensure_ascii=False)
