"""desktop/tasks.py: work off the UI thread, answers back on it, never to a widget that is gone."""
import threading
import time

from PySide6.QtWidgets import QLabel

from desktop.tasks import Task


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
    class Receiver(QLabel):
        def show_result(self, value):
            self.setText(str(value))

    receiver = Receiver()
    finished = threading.Event()

    def slow():
        finished.wait(5)
        return "late"

    Task(slow).success(receiver.show_result).run_in_background()
    receiver.deleteLater()
    qtbot.wait(50)  # the widget is destroyed while the work still runs
    finished.set()
    time.sleep(0.05)
    qtbot.wait(100)  # delivering to the deleted widget would raise inside the event loop and fail the test
