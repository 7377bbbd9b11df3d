"""`llamadesk-cli inspect MODEL.gguf`: what a GGUF file is, read from its header only."""
from __future__ import annotations

import argparse
import json

from core.cli.errors import fail
from core.gguf.reader import GGUFError, ModelInfo, read_model_info
from core.platform.units import format_bytes


def register(subparsers) -> None:
    parser = subparsers.add_parser("inspect", help="describe a GGUF model file from its header")
    parser.add_argument("model", help="path to a .gguf file")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        info = read_model_info(args.model)
    except GGUFError as error:
        return fail(str(error))
    print(json.dumps(summary(info), indent=2) if args.json else describe(info))
    return 0


def summary(info: ModelInfo) -> dict:
    return {
        "source": info.source,
        "architecture": info.architecture,
        "name": info.name,
        "parameter_count": info.parameter_count,
        "quantization": info.quantization,
        "file_type": info.file_type,
        "file_size": info.file_size,
        "weights_bytes": info.weights_bytes(),
        "n_layers": info.n_layers,
        "context_length": info.context_length,
        "embedding_length": info.embedding_length,
        "head_count": info.head_count,
        "head_count_kv": info.head_count_kv,
        "vocab_size": info.vocab_size,
        "has_chat_template": info.chat_template is not None,
        "tensor_count": len(info.tensors),
    }


def describe(info: ModelInfo) -> str:
    template = "yes" if info.chat_template else "no (a ChatML fallback will be used)"
    return "\n".join([
        f"Model         {info.name or '(unnamed)'}",
        f"Architecture  {info.architecture}",
        f"Parameters    {info.parameter_count / 1e9:.2f} B" if info.parameter_count >= 1e9
        else f"Parameters    {info.parameter_count / 1e6:.0f} M",
        f"Quantization  {info.quantization}",
        f"File size     {format_bytes(info.file_size)} (weights {format_bytes(info.weights_bytes())})",
        f"Layers        {info.n_layers}",
        f"Context       {info.context_length} tokens (trained)",
        f"Heads         {info.head_count} attention, {info.head_count_kv} KV",
        f"Vocabulary    {info.vocab_size} tokens",
        f"Chat template {template}",
    ])
