"""The model bar's facts about the loaded model stay true on a narrow window: cut between facts, never inside one."""
from __future__ import annotations

import pytest

from desktop.models.model_bar import MORE, SEPARATOR, ModelBar

FACTS = ["CPU", "30 of 30 layers on GPU", "8,192 context", "loaded in 0.9 s"]


@pytest.fixture
def bar(qtbot) -> ModelBar:
    bar = ModelBar()
    qtbot.addWidget(bar)
    bar.show_loaded("SmolLM2-135M-Instruct.Q4_1", FACTS)
    bar.show()
    return bar


def _fit_details_to(bar: ModelBar, text: str, qtbot) -> None:
    """Narrow the details to exactly the width `text` needs (plus the label's margins)."""
    label = bar.details
    extra = label.width() - label.contentsRect().width()
    bar.resize(bar.width() - label.width() + label.fontMetrics().horizontalAdvance(text) + extra, bar.height())
    qtbot.waitUntil(lambda: label.contentsRect().width() >= label.fontMetrics().horizontalAdvance(text), timeout=2000)


@pytest.mark.parametrize("whole", [1, 2, 3])
def test_a_narrow_bar_shows_whole_facts_and_says_some_are_left_out(bar, qtbot, whole):
    expected = SEPARATOR.join(FACTS[:whole]) + SEPARATOR + MORE
    _fit_details_to(bar, expected + "l", qtbot)  # a little room over, never enough for the next fact
    assert bar.details.shown_text() == expected


def test_the_load_time_keeps_its_unit(bar, qtbot):
    full = SEPARATOR.join(FACTS)
    _fit_details_to(bar, full[:-1], qtbot)  # one character short of everything: Qt's own eliding would cut "s"
    assert bar.details.shown_text() == SEPARATOR.join(FACTS[:3]) + SEPARATOR + MORE


def test_a_wide_bar_shows_every_fact_and_screen_readers_get_them_all(bar, qtbot):
    bar.resize(2000, bar.height())
    qtbot.waitUntil(lambda: bar.details.shown_text() == SEPARATOR.join(FACTS), timeout=2000)
    bar.resize(300, bar.height())
    assert bar.details.text() == SEPARATOR.join(FACTS) == bar.details.toolTip()
