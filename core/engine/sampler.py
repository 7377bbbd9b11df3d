"""A llama.cpp sampler chain built from SamplingSettings (grammar, repeat penalty, top-k, top-p, min-p,
temperature). The grammar comes first, so every later stage chooses among tokens the grammar allows."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import llama_cpp.llama_cpp as native

from core.engine.errors import InvalidGrammar
from core.engine.protocol import SamplingSettings

PENALTY_LAST_N = 64           # tokens the repeat penalty looks back over (llama-cpp-python's default)
RANDOM_SEED = 0xFFFFFFFF      # LLAMA_DEFAULT_SEED: llama.cpp picks a random seed


def effective_seed(sampling: SamplingSettings, load_seed: int) -> int:
    seed = sampling.seed if sampling.seed is not None else load_seed
    return RANDOM_SEED if seed is None or seed < 0 else seed & 0xFFFFFFFF


@contextmanager
def sampler_chain(sampling: SamplingSettings, *, seed: int, n_vocab: int, vocab=None) -> Iterator[object]:
    """A fresh chain for one answer, freed afterwards. Raises InvalidGrammar for a grammar that does not parse."""
    chain = native.llama_sampler_chain_init(native.llama_sampler_chain_default_params())
    try:
        if sampling.grammar:
            native.llama_sampler_chain_add(chain, _grammar_stage(sampling.grammar, vocab))
        for stage in _stages(sampling, seed, n_vocab):
            native.llama_sampler_chain_add(chain, stage)
        yield chain
    finally:
        native.llama_sampler_free(chain)


def _grammar_stage(grammar: str, vocab) -> object:
    if vocab is None:
        raise InvalidGrammar("A grammar needs the model's vocabulary.")
    stage = native.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), b"root")
    if not stage:
        raise InvalidGrammar("The grammar does not parse (llama.cpp's log names the place); "
                             "it must be GBNF with a rule named root.")
    return stage


def _stages(sampling: SamplingSettings, seed: int, n_vocab: int) -> list[object]:
    stages = []
    if sampling.repeat_penalty != 1.0:
        stages.append(native.llama_sampler_init_penalties(
            n_vocab, PENALTY_LAST_N, sampling.repeat_penalty, 0.0, 0.0))
    if sampling.temperature <= 0:
        stages.append(native.llama_sampler_init_greedy())
        return stages
    if sampling.top_k > 0:
        stages.append(native.llama_sampler_init_top_k(sampling.top_k))
    if sampling.top_p < 1.0:
        stages.append(native.llama_sampler_init_top_p(sampling.top_p, 1))
    if sampling.min_p > 0.0:
        stages.append(native.llama_sampler_init_min_p(sampling.min_p, 1))
    stages.append(native.llama_sampler_init_temp(sampling.temperature))
    stages.append(native.llama_sampler_init_dist(seed))
    return stages
