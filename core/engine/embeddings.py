"""Embeddings, inside the worker: each text's pooled vector from a model loaded with embeddings on.

An embedding model (a BERT-style encoder, or a decoder such as Qwen3-Embedding) declares its pooling in
its header; llama.cpp pools the token vectors of one sequence into one. Each text is evaluated whole in
one batch: an encoder cannot split a text across batches (llama.cpp aborts), so a text longer than the
batch is refused with its figures, or read from its beginning when the request asks to truncate.
Vectors are scaled to unit length, as OpenAI's are, so a dot product is the cosine similarity.
"""
from __future__ import annotations

import math
from typing import Sequence

from core.engine.errors import PromptTooLong
from core.engine.llama_runtime import LlamaRuntime
from core.engine.protocol import Embedded


def embed_texts(runtime: LlamaRuntime, texts: Sequence[str], *, truncate: bool = False) -> Embedded:
    """One unit vector per text, and the tokens read. Raises PromptTooLong for a text that is empty, or longer
    than the model takes at once unless `truncate` (then its beginning is read)."""
    vectors, tokens_read = [], 0
    for index, text in enumerate(texts):
        tokens = runtime.tokenize(text, add_bos=True)   # the model's own BOS/EOS flags decide what is added
        if truncate:
            tokens = tokens[:runtime.embedding_limit]
        _check_length(runtime, tokens, index, len(texts))
        vectors.append(_unit(runtime.embed(tokens)))
        tokens_read += len(tokens)
    return Embedded(tuple(vectors), tokens_read)


def _check_length(runtime: LlamaRuntime, tokens: list[int], index: int, count: int) -> None:
    which = f"Input {index + 1} of {count}" if count > 1 else "The input"
    if not tokens:
        raise PromptTooLong(f"{which} is empty: there is nothing to embed.")
    limit = runtime.embedding_limit
    if len(tokens) > limit:
        raise PromptTooLong(f"{which} needs {len(tokens)} tokens, but this embedding model takes at most "
                            f"{limit} at once. Split the text into shorter pieces.")


def _unit(vector: Sequence[float]) -> tuple[float, ...]:
    length = math.sqrt(sum(value * value for value in vector))
    if length == 0 or not math.isfinite(length):
        return tuple(float(value) for value in vector)
    return tuple(value / length for value in vector)
