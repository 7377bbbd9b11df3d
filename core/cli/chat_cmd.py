"""`llamadesk-cli chat MODEL.gguf --prompt TEXT`: one answer through the engine process.

Streams the answer to stdout and the figures to stderr; a reasoning model's thinking streams to stderr
between "[thinking]" and "[/thinking]" lines, and each tool call it makes is a "[tool call] NAME ARGUMENTS" line
on stderr, so stdout holds the answer alone. With --json prints one object whose keys other tools script
against: text, reasoning (the thinking, "" for none), tool_calls (a list of {id, name, arguments}),
load_seconds, ttft_seconds, prompt_tokens, completion_tokens, tokens_per_second, n_gpu_layers, backend.
--thinking on/off and --effort low/medium/high apply where the model's template offers them.
--attach PATH (repeatable) sends images with the prompt to a vision model, whose projector is --mmproj PATH or the
mmproj file beside the model; --json then adds attachments: [{name, kind "image", tokens, used "whole"}].
An attached document (text, Markdown, source code, PDF, .docx, HTML) goes with the prompt whole when it fits the
context, else its parts that best match the prompt (SQLite FTS5, BM25); --json lists it in attachments as
{name, kind "document", tokens, used "whole"|"retrieved", sources: [{page, position, label}]}. A file that
cannot be read ends the command with one sentence before the model loads: nothing is sent.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.chat.attachments.extraction import DocumentRefused, document_format
from core.chat.attachments.retrieval import DocumentUse, documents_for_question, question_with_documents
from core.cli import fit_options
from core.cli.errors import fail
from core.fit.context_need import TokenCounter
from core.engine.client import EngineClient, EngineError
from core.engine.embedder import Embedder
from core.engine.vision import ImageRefused, read_image
from core.models import library
from core.models.projectors import projector_beside
from core.engine.protocol import (AnswerFinished, ReasoningText, SamplingSettings, ThinkingChoice, TokenText,
                                  ToolCallMade)
from core.gguf.reader import GGUFError
from core.machine import hardware
from core.fit.load_preparation import prepare_load
from core.fit.choice import OffloadChoice

DEFAULT_CONTEXT = 4096


def register(subparsers) -> None:
    parser = subparsers.add_parser("chat", help="ask a model one question and stream its answer")
    parser.add_argument("model", help="path to a .gguf file")
    parser.add_argument("--prompt", required=True, help="the user's message")
    parser.add_argument("--system", default=None, help="an optional system prompt")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--ctx", type=int, default=None, help=f"context size (default {DEFAULT_CONTEXT} "
                        "or the model's trained context if smaller)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: physical cores)")
    parser.add_argument("--gpu-layers", type=int, default=None,
                        help="layers to put on the GPU (-1 all; default: as many as the planner says fit)")
    parser.add_argument("--thinking", choices=("on", "off"), default=None,
                        help="switch the model's thinking on or off (where its template can; default: the template's)")
    parser.add_argument("--effort", choices=("low", "medium", "high"), default=None,
                        help="how hard the model thinks (where its template reads an effort)")
    parser.add_argument("--attach", action="append", default=[], metavar="PATH",
                        help="an image to send with the prompt (repeat for several); needs a vision model")
    parser.add_argument("--mmproj", default=None, metavar="PATH",
                        help="the vision model's projector (default: the mmproj file beside the model)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of streaming")
    fit_options.add_worker_argument(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.max_tokens < 1 or (args.ctx is not None and args.ctx < 64) or args.temperature < 0:
        return fail("--max-tokens must be ≥ 1, --ctx ≥ 64 and --temperature ≥ 0")
    args.attach, documents = _split_attachments(args.attach)
    try:
        projector = _projector(args)
    except ImageRefused as error:       # checked before the model loads: nothing is sent
        return fail(str(error))
    try:
        choice = OffloadChoice(gpu_layers=args.gpu_layers, context=args.ctx or DEFAULT_CONTEXT)
        # Workers are probed first: attaching one that is busy or gone would make llama.cpp wait or abort.
        snapshot = fit_options.machine(None, args.workers)
        prepared = prepare_load(args.model, choice, threads=args.threads, cap_context_at_trained=args.ctx is None,
                                snapshot=snapshot, projector_path=projector)
    except (GGUFError, hardware.HardwareError) as error:
        return fail(str(error))
    sampling = SamplingSettings(temperature=args.temperature, seed=args.seed, max_tokens=args.max_tokens)
    messages = ([{"role": "system", "content": args.system}] if args.system else [])
    messages.append({"role": "user", "content": args.prompt})
    try:
        args.documents = _documents(args, documents, prepared.settings.n_ctx)
    except DocumentRefused as error:    # checked before the model loads: nothing is sent
        return fail(str(error))
    if args.documents is not None:
        messages[-1]["content"] = question_with_documents(args.prompt, args.documents)
    if args.attach:
        messages[-1]["images"] = list(args.attach)
    client = EngineClient()
    try:
        loaded = client.load(prepared.settings)
        finished = _answer(client, messages, sampling, _thinking(args), stream=not args.json)
    except EngineError as error:
        return fail(str(error))
    except KeyboardInterrupt:          # Ctrl-C, even during a chat template's render: one line, no traceback
        print("\nStopped.", file=sys.stderr)
        return 130
    finally:
        client.close()
    _report(args, loaded, finished)
    return 0


def _split_attachments(paths: list[str]) -> tuple[list[str], list[str]]:
    """(images, documents): a file whose name says it is a document LlamaDesk reads is a document."""
    documents = [path for path in paths if document_format(Path(path))]
    return [path for path in paths if path not in documents], documents


def _documents(args: argparse.Namespace, paths: list[str], context: int) -> DocumentUse | None:
    """The documents' parts that go with the prompt: whole when they fit the room the context leaves."""
    if not paths:
        return None
    counter = TokenCounter(args.model)
    found = library.embedding_model_path()       # the library's embedding model also searches by meaning
    embedder = Embedder(found, threads=args.threads) if found is not None else None
    try:
        room = context - args.max_tokens - counter(args.prompt) - counter(args.system or "") - 64
        return documents_for_question(paths, args.prompt, max(room, 0), counter, embed=embedder)
    finally:
        counter.close()
        if embedder is not None:
            embedder.close()


def _document_report(use: DocumentUse | None) -> list[dict]:
    if use is None:
        return []
    return [{"name": document.name, "kind": "document", "tokens": document.tokens, "used": document.used,
             "sources": [{"page": source.page, "position": source.position, "label": source.label}
                         for source in use.sources if source.attachment_id == document.id]}
            for document in use.documents]


def _projector(args: argparse.Namespace) -> str | None:
    """The projector to load: --mmproj, else the one beside the model; the attached images checked first."""
    for path in args.attach:
        read_image(path)
    found = Path(args.mmproj) if args.mmproj else (projector_beside(args.model) if args.attach else None)
    if args.attach and found is None:
        raise ImageRefused(f"{Path(args.model).name} cannot look at images: no projector (mmproj file) lies "
                           "beside it. Pass its projector with --mmproj PATH.")
    return str(found) if found is not None else None


def _thinking(args: argparse.Namespace) -> ThinkingChoice:
    return ThinkingChoice(enabled=None if args.thinking is None else args.thinking == "on", effort=args.effort)


def _answer(client: EngineClient, messages, sampling, thinking: ThinkingChoice, *, stream: bool) -> AnswerFinished:
    shown = AnswerPrinter(stream)
    for event in client.chat(messages, sampling, thinking=thinking):
        if isinstance(event, AnswerFinished):
            shown.end()
            return event
        shown.show(event)
    raise EngineError("The engine ended the answer without reporting its figures.")


class AnswerPrinter:
    """Text mode: thinking to stderr between [thinking] lines, tool calls to stderr, the answer to stdout."""

    def __init__(self, stream: bool) -> None:
        self.stream = stream
        self.thinking = False

    def show(self, event) -> None:
        if not self.stream:
            return
        if isinstance(event, ReasoningText):
            if not self.thinking:
                self.thinking = True
                sys.stderr.write("[thinking]\n")
            sys.stderr.write(event.text)
            sys.stderr.flush()
            return
        self._end_thinking()
        if isinstance(event, TokenText):
            sys.stdout.write(event.text)
            sys.stdout.flush()
        elif isinstance(event, ToolCallMade):
            print(f"[tool call] {event.call.name} {event.call.arguments}", file=sys.stderr, flush=True)

    def end(self) -> None:
        if self.stream:
            self._end_thinking()
            sys.stdout.write("\n")

    def _end_thinking(self) -> None:
        if self.thinking:
            self.thinking = False
            sys.stderr.write("\n[/thinking]\n")
            sys.stderr.flush()


def _report(args: argparse.Namespace, loaded, finished: AnswerFinished) -> None:
    stats = finished.stats
    if args.json:
        attachments = {"attachments": [{"name": Path(path).name, "kind": "image", "tokens": tokens, "used": "whole"}
                                       for path, tokens in zip(args.attach, stats.image_tokens)]} if args.attach else {}
        if args.documents is not None:
            attachments = {"attachments": attachments.get("attachments", []) + _document_report(args.documents)}
        print(json.dumps({
            "text": finished.text,
            "reasoning": finished.reasoning,
            "tool_calls": [{"id": call.id, "name": call.name, "arguments": call.arguments}
                           for call in finished.tool_calls],
            "load_seconds": round(loaded.load_seconds, 4),
            "ttft_seconds": round(stats.ttft_seconds, 4),
            "prompt_tokens": stats.prompt_tokens,
            "completion_tokens": stats.completion_tokens,
            "tokens_per_second": round(stats.tokens_per_second, 2),
            "n_gpu_layers": loaded.n_gpu_layers,
            "backend": loaded.backend,
            **attachments,
        }))
        return
    thought = f" ({stats.reasoning_tokens} thinking)" if stats.reasoning_tokens else ""
    print(f"load {loaded.load_seconds:.2f} s · first token {stats.ttft_seconds:.3f} s · "
          f"{stats.prompt_tokens} prompt tokens · {stats.completion_tokens} tokens{thought} at "
          f"{stats.tokens_per_second:.1f} tok/s · {loaded.n_gpu_layers} GPU layers · {loaded.backend}",
          file=sys.stderr)
