"""`llamadesk-cli chat MODEL.gguf --prompt TEXT`: one answer through the engine process.

Streams the answer to stdout and the figures to stderr; with --json prints one object whose keys other
tools script against: text, load_seconds, ttft_seconds, prompt_tokens, completion_tokens,
tokens_per_second, n_gpu_layers, backend.
"""
from __future__ import annotations

import argparse
import json
import sys

from core.cli.errors import fail
from core.engine.client import EngineClient, EngineError
from core.engine.protocol import AnswerFinished, SamplingSettings, TokenText
from core.gguf.reader import GGUFError
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
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of streaming")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.max_tokens < 1 or (args.ctx is not None and args.ctx < 64) or args.temperature < 0:
        return fail("--max-tokens must be ≥ 1, --ctx ≥ 64 and --temperature ≥ 0")
    try:
        choice = OffloadChoice(gpu_layers=args.gpu_layers, context=args.ctx or DEFAULT_CONTEXT)
        prepared = prepare_load(args.model, choice, threads=args.threads, cap_context_at_trained=args.ctx is None)
    except GGUFError as error:
        return fail(str(error))
    sampling = SamplingSettings(temperature=args.temperature, seed=args.seed, max_tokens=args.max_tokens)
    messages = ([{"role": "system", "content": args.system}] if args.system else [])
    messages.append({"role": "user", "content": args.prompt})
    client = EngineClient()
    try:
        loaded = client.load(prepared.settings)
        finished = _answer(client, messages, sampling, stream=not args.json)
    except EngineError as error:
        return fail(str(error))
    except KeyboardInterrupt:          # Ctrl-C, even during a chat template's render: one line, no traceback
        print("\nStopped.", file=sys.stderr)
        return 130
    finally:
        client.close()
    _report(args, loaded, finished)
    return 0


def _answer(client: EngineClient, messages, sampling, *, stream: bool) -> AnswerFinished:
    for event in client.chat(messages, sampling):
        if isinstance(event, TokenText) and stream:
            sys.stdout.write(event.text)
            sys.stdout.flush()
        elif isinstance(event, AnswerFinished):
            if stream:
                sys.stdout.write("\n")
            return event
    raise EngineError("The engine ended the answer without reporting its figures.")


def _report(args: argparse.Namespace, loaded, finished: AnswerFinished) -> None:
    stats = finished.stats
    if args.json:
        print(json.dumps({
            "text": finished.text,
            "load_seconds": round(loaded.load_seconds, 4),
            "ttft_seconds": round(stats.ttft_seconds, 4),
            "prompt_tokens": stats.prompt_tokens,
            "completion_tokens": stats.completion_tokens,
            "tokens_per_second": round(stats.tokens_per_second, 2),
            "n_gpu_layers": loaded.n_gpu_layers,
            "backend": loaded.backend,
        }))
        return
    print(f"load {loaded.load_seconds:.2f} s · first token {stats.ttft_seconds:.3f} s · "
          f"{stats.prompt_tokens} prompt tokens · {stats.completion_tokens} tokens at "
          f"{stats.tokens_per_second:.1f} tok/s · {loaded.n_gpu_layers} GPU layers · {loaded.backend}",
          file=sys.stderr)
