"""A chat template is code from a downloaded file: one that loops or allocates without bound is stopped with a
sentence, the renderer goes on serving, and only variables with a value reach a template."""
from __future__ import annotations

import threading

import pytest

from core.engine.chat_format import ChatTemplate, ChatTemplateError, RenderCancelled
from core.engine.template_renderer import TemplateRenderer

QUESTION = [{"role": "user", "content": "Hi"}]
LOOP = "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}"
SILENT_LOOP = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"


@pytest.fixture
def renderer():
    renderer = TemplateRenderer(seconds=1.0, memory_bytes=256 * 1024 * 1024)
    yield renderer
    renderer.close()


def template(text: str, renderer: TemplateRenderer) -> ChatTemplate:
    return ChatTemplate.for_model(text, bos_token="", eos_token="", model_name="hostile.gguf", renderer=renderer)


@pytest.mark.parametrize("hostile", [LOOP, SILENT_LOOP])
def test_a_template_that_never_ends_is_stopped_and_the_next_render_works(renderer, hostile):
    with pytest.raises(ChatTemplateError, match="hostile.gguf.*did not finish within 1 seconds"):
        template(hostile, renderer).render(QUESTION)
    assert template("{{ messages[0]['content'] }}!", renderer).render(QUESTION) == "Hi!"


@pytest.mark.parametrize("hostile", ["{{ 'x' * 10**10 }}", "{{ 'x' | center(10**10) }}",
                                     "{% set s = namespace(t='x') %}{% for i in range(40) %}"
                                     "{% set s.t = s.t ~ s.t %}{% endfor %}{{ s.t | length }}"])
def test_a_template_that_allocates_without_bound_is_stopped_by_the_memory_cap(renderer, hostile):
    renderer.seconds = 60.0                              # a busy machine copies slowly: let memory end it
    hostile_template = template(hostile, renderer)
    assert hostile_template.source == "model"            # compiling it allocated nothing
    with pytest.raises(ChatTemplateError, match="needed more than 256 MB"):
        hostile_template.render(QUESTION)
    assert template("ok", renderer).render(QUESTION) == "ok"


def test_stop_ends_a_render_that_never_ends(renderer):
    renderer.seconds = 60.0
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    with pytest.raises(RenderCancelled):
        template(SILENT_LOOP, renderer).render(QUESTION, should_stop=stop.is_set)


def test_a_template_error_names_the_model_and_says_what_went_wrong(renderer):
    with pytest.raises(ChatTemplateError, match=r"hostile.gguf could not be used: it failed: TypeError"):
        template("{{ 1 + messages }}", renderer).render(QUESTION)


def test_only_variables_with_a_value_reach_the_template(renderer):
    probe = template("{% if tools is defined %}tools{% endif %}{% if enable_thinking is defined %}think{% endif %}"
                     "|{{ date_string }}|{{ strftime_now('%Y') }}", renderer)
    rendered = probe.render(QUESTION)
    assert rendered.startswith("|") and rendered.count("|") == 2 and len(rendered.split("|")[2]) == 4
    assert probe.render(QUESTION, tools=[{"type": "function", "function": {"name": "f"}}]).startswith("tools|")
