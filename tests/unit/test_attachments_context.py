"""The planner's sentence for a message with documents: fits, needs a larger context (and what it costs), or too
long (retrieval takes over); and the model's own token count."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.fit.choice import OffloadChoice
from core.fit.context_need import (FITS, RAISE, TOO_LONG, TokenCounter, context_need, images_left_out,
                                   with_memory_returned)
from core.gguf.reader import read_model_info
from core.machine.hardware import HardwareSnapshot, HostInfo

MODEL = os.environ.get("LLAMADESK_TEST_MODEL", "")
needs_model = pytest.mark.skipif(not Path(MODEL).is_file(), reason="LLAMADESK_TEST_MODEL is not set")
GiB = 1 << 30


def roomy_host() -> HardwareSnapshot:
    return HardwareSnapshot(HostInfo("Linux", "test CPU", 8, 16, 64 * GiB, 48 * GiB), (), ("CPU",), ())


def tiny_host() -> HardwareSnapshot:
    return HardwareSnapshot(HostInfo("Linux", "test CPU", 2, 2, 1_300 * 2**20, 1_250 * 2**20), (), ("CPU",), ())


@needs_model
def test_a_message_within_the_context_fits_it():
    need = context_need(3000, read_model_info(MODEL), roomy_host(), OffloadChoice(context=8192))
    assert (need.verdict, need.sentence) == (FITS, "fits the current 8k context")


@needs_model
def test_a_longer_message_says_which_context_it_needs_and_what_it_costs():
    need = context_need(6000, read_model_info(MODEL), roomy_host(), OffloadChoice(context=4096))
    assert need.verdict == RAISE and need.needed_context == 8192 and need.extra_kv_bytes > 0
    assert need.sentence.startswith("needs an 8k context: +")
    assert need.sentence.endswith("of KV cache, still fits in memory — raise the context?")


@needs_model
def test_a_document_longer_than_the_trained_context_is_too_long():
    need = context_need(40_000, read_model_info(MODEL), roomy_host(), OffloadChoice(context=8192))
    assert (need.verdict, need.sentence) == (TOO_LONG, "too long: the most relevant parts will be used")


@needs_model
def test_a_larger_context_that_does_not_fit_the_machine_is_too_long():
    info = read_model_info(MODEL)
    assert context_need(6000, info, tiny_host(), OffloadChoice(context=4096)).verdict == TOO_LONG


def test_an_image_that_does_not_fit_says_what_it_needs_and_what_would_make_room():
    sentence = images_left_out(16, 1, context=1024, room=-64, answer_tokens=1024, chat=False, raisable=False)
    assert sentence == ("the image needs 16 tokens, but only 0 of the 1k context are left after the answer's "
                        "1,024 tokens — shorten the answer length or remove the image")
    assert "relevant parts" not in sentence, "an image cannot be partly used"


def test_images_in_a_chat_offer_every_way_to_make_room():
    sentence = images_left_out(1_200, 2, context=4096, room=900, answer_tokens=2048, chat=True, raisable=True)
    assert sentence == ("the 2 images need 1,200 tokens, but only 900 of the 4k context are left after the chat so "
                        "far and the answer's 2,048 tokens — raise the context, shorten the answer length, start a "
                        "new chat or remove an image")


def test_a_reload_plans_with_the_loaded_models_memory_free_again():
    snapshot = with_memory_returned(roomy_host(), None, 2 * GiB)
    assert snapshot.host.ram_available_bytes == 50 * GiB


@needs_model
def test_tokens_are_counted_with_the_models_vocabulary():
    counter = TokenCounter(MODEL)
    try:
        assert counter("") == 0
        short, long = counter("hello world"), counter("hello world " * 100)
        assert 1 <= short <= 3 and 150 <= long <= 250
    finally:
        counter.close()
