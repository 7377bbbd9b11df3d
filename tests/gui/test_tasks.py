"""desktop/tasks.py: work off the UI thread, answers back on it, never to a widget that is gone."""
import threading

from PySide6.QtCore import QThreadPool
from PySide6.QtWidgets import QLabel

import shiboken6

from desktop.tasks import Task, _live_tasks


def test_the_answer_arrives_on_the_ui_thread(qtbot):
    ui_thread = threading.get_ident()
    seen = {}

    def work():
        seen["worker"] = threading.get_ident()
        return 42

    task = Task(work).success(lambda value: seen.update(result=value, caller=threading.get_ident()))
    task.run_in_background()
    qtbot.waitUntil(lambda: "result" in seen, timeout=5000)
    assert seen["result"] == 42
    assert seen["caller"] == ui_thread and seen["worker"] != ui_thread


def test_a_generator_streams_progress_in_order_then_its_result(qtbot):
    steps, done = [], []

    def work():
        for index in range(5):
            yield index
        return "finished"

    Task(work).progress(steps.append).success(done.append).run_in_background()
    qtbot.waitUntil(lambda: bool(done), timeout=5000)
    assert steps == [0, 1, 2, 3, 4] and done == ["finished"]


def test_a_failure_reaches_the_failure_callback(qtbot):
    errors = []

    def work():
        raise ValueError("the disk is full")

    Task(work).failure(errors.append).run_in_background()
    qtbot.waitUntil(lambda: bool(errors), timeout=5000)
    assert str(errors[0]) == "the disk is full"


def test_an_answer_for_a_deleted_widget_is_dropped(qtbot):
    delivered = []

    class Receiver(QLabel):
        def show_result(self, value):
            delivered.append(value)
            self.setText(str(value))  # on a deleted widget this raises, and pytest-qt fails the test

    receiver = Receiver()
    finished = threading.Event()

    def slow():
        finished.wait(5)
        return "late"

    task = Task(slow).success(receiver.show_result).run_in_background()
    receiver.deleteLater()
    qtbot.waitUntil(lambda: not shiboken6.isValid(receiver), timeout=2000)  # gone while the work still runs
    finished.set()
    qtbot.waitUntil(lambda: task not in _live_tasks, timeout=5000)  # the task has reported
    qtbot.wait(50)
    assert delivered == []


def test_nothing_reaches_the_callbacks_once_the_named_parent_is_gone(qtbot):
    """Lambdas and progress callbacks have no owner Qt knows of: the parent named on the task stands for them."""
    parent = QLabel()
    release = threading.Event()
    received = []

    def work():
        yield "before"
        release.wait(5)
        yield "after"
        return "late"

    task = (Task(work, parent=parent).progress(lambda value: received.append(("progress", value)))
            .success(lambda value: received.append(("success", value))).run_in_background())
    qtbot.waitUntil(lambda: received == [("progress", "before")], timeout=5000)
    parent.deleteLater()
    qtbot.waitUntil(lambda: not shiboken6.isValid(parent), timeout=2000)
    release.set()
    qtbot.waitUntil(lambda: task not in _live_tasks, timeout=5000)
    qtbot.wait(50)
    assert received == [("progress", "before")]


def test_a_parent_that_lives_gets_every_answer(qtbot):
    parent = QLabel()
    received = []
    (Task(lambda: 7, parent=parent).success(lambda value: received.append(value)).run_in_background())
    qtbot.waitUntil(lambda: received == [7], timeout=5000)


def test_chats_are_written_while_slow_work_fills_the_shared_threads(qtbot):
    """Hub requests and fit checks can hold every shared thread for seconds; a streamed answer must still reach
    the chats database at once (the store has its own thread)."""
    from desktop.chat.store_queue import StoreQueue
    from desktop.tasks import SHARED_THREADS

    release = threading.Event()
    for _ in range(SHARED_THREADS + 2):
        Task(release.wait, 30).run_in_background()
    try:
        written = []
        StoreQueue().call(written.append, "the answer so far", done=lambda _result: None)
        qtbot.waitUntil(lambda: written == ["the answer so far"], timeout=2000)
    finally:
        release.set()
        QThreadPool.globalInstance().waitForDone(5000)


def test_short_work_is_not_stuck_behind_two_slow_requests(qtbot):
    """Qt's default is one shared thread per core: on a 2-core machine two slow hub requests held up everything."""
    release = threading.Event()
    for _ in range(2):
        Task(release.wait, 30).run_in_background()
    try:
        answers = []
        Task(lambda: "listed").success(answers.append).run_in_background()
        qtbot.waitUntil(lambda: answers == ["listed"], timeout=2000)
    finally:
        release.set()
        QThreadPool.globalInstance().waitForDone(5000)


class _Watched:
    """Records the thread that frees it (a stand-in for an object holding Qt connections)."""

    def __init__(self, freed_on: list) -> None:
        self.freed_on = freed_on

    def __del__(self) -> None:
        self.freed_on.append(threading.get_ident())


def test_what_a_failed_task_held_is_freed_on_the_ui_thread(qtbot, monkeypatch):
    """An error's traceback keeps the failed function's locals. Freed on a worker thread, an object with Qt
    connections made PySide disconnect there, which deadlocked against the UI thread connecting something. Here
    each worker waits until the UI thread has handled its failure, as a busy worker may: without care, the
    worker's references would then be the last ones."""
    from desktop import tasks

    freed_on, failures = [], []
    handled = threading.Event()
    emit = tasks._Runner._emit

    def emit_then_wait(signal, value):
        emit(signal, value)
        handled.wait(5)
    monkeypatch.setattr(tasks._Runner, "_emit", staticmethod(emit_then_wait))

    def work():
        held = _Watched(freed_on)          # a local of the failing frame: kept by the error's traceback
        raise ValueError(f"failed holding {held!r}")

    Task(work).failure(failures.append).run_in_background()
    qtbot.waitUntil(lambda: len(failures) == 1, timeout=5000)
    failures.clear()                        # the UI thread lets go of the error first
    handled.set()
    qtbot.wait(1200)                        # what a worker left is let go of once it is surely done with it
    Task(lambda: None).run_in_background()  # the next answer lets go of it
    qtbot.waitUntil(lambda: len(freed_on) == 1, timeout=5000)
    assert freed_on == [threading.get_ident()]
