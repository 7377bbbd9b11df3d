#!/usr/bin/env python3
"""Helpers for bench/bench_ui.py: the UI-thread stall probe, a real-event-loop wait, and the start-up driver.

StallProbe: a precise QTimer on the UI thread ticks every PROBE_MS; a stall is the wall-clock gap between two
ticks beyond PROBE_MS (what a user feels). For every gap it also keeps the UI thread's own CPU time
(time.thread_time), which separates our own blocking (CPU spent on the UI thread) from the OS scheduling the
process out on this shared 2-core machine (wall time without UI CPU), or from waiting on the GIL.

Run as a script (`python bench/ui_probe.py`), it is the start-up driver: it runs the real `desktop.app.main()`
(what `python -m desktop.app` runs) with one application-wide event filter added, which records when the main
window is first exposed and first painted. It writes JSON to $LLAMADESK_PROBE_RESULT as soon as the first
paint event has been handled, then quits the app after $LLAMADESK_PROBE_STAY_S seconds (so the bench can read
its idle memory from outside). From then on, a StallProbe watches the event loop for $LLAMADESK_PROBE_WATCH_S
seconds (the window's start-up work: chats opening, warm-ups, the first memory samples, the first-run picker)
and its result goes to <result>.stalls.json. Nothing in desktop/ changes.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

PROBE_MS = 5
WATCH = bool(os.environ.get("LLAMADESK_BENCH_STACKS"))   # diagnosis: where the UI thread is during a stall
DEPTH = int(os.environ.get("LLAMADESK_BENCH_STACK_DEPTH", "4"))


def _runqueue_wait_s() -> float:
    """Seconds this thread has spent runnable but waiting for a CPU (Linux schedstat), or 0 elsewhere."""
    try:
        with open("/proc/thread-self/schedstat", "rb") as handle:
            return int(handle.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


class StallProbe:
    def __init__(self, interval_ms: int = PROBE_MS) -> None:
        from PySide6.QtCore import Qt, QTimer

        self.interval_ms = interval_ms
        self._timer = QTimer()
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)
        self._reset()

    def _reset(self) -> None:
        self.gaps: list[float] = []      # ms beyond the interval
        self.cpu: list[float] = []       # UI thread CPU ms in the same gap
        self.wait: list[float] = []      # ms the UI thread was runnable but not given a CPU (the OS, not us)
        self.at: list[float] = []        # s since start at the gap's beginning
        self.stacks: dict[int, str] = {} # gap index -> where the threads were (LLAMADESK_BENCH_STACKS=1)
        self._started = self._last = time.perf_counter()
        self._last_cpu = time.thread_time()
        self._last_wait = _runqueue_wait_s()

    def start(self) -> None:
        self._reset()
        self._timer.start()
        if WATCH:
            import threading

            self._slots: list[tuple[float, float, str]] = []   # (start, end, callable) run from the event loop
            self._open_calls: dict[int, float] = {}
            sys.setprofile(self._profile)   # this (the UI) thread only
            self._ui_thread = threading.get_ident()
            self._watching = True
            self._watcher = threading.Thread(target=self._watch, daemon=True)
            self._watcher.start()

    def _tick(self) -> None:
        now, cpu, wait = time.perf_counter(), time.thread_time(), _runqueue_wait_s()
        self.gaps.append(max(0.0, (now - self._last) * 1000 - self.interval_ms))
        self.cpu.append((cpu - self._last_cpu) * 1000)
        self.wait.append((wait - self._last_wait) * 1000)
        self.at.append(self._last - self._started)
        self._last, self._last_cpu, self._last_wait = now, cpu, wait

    def _profile(self, frame, event, _arg) -> None:
        """Diagnosis: time every Python callable the Qt event loop calls directly (a slot, a timer callback)."""
        if event == "call":
            back = frame.f_back
            if back is not None and back.f_code in _LOOP_CODES and frame.f_code not in _OWN_CODES:
                self._open_calls[id(frame)] = time.perf_counter()
        elif event == "return" and self._open_calls:
            began = self._open_calls.pop(id(frame), None)
            if began is not None:
                code = frame.f_code
                self._slots.append((began, time.perf_counter(),
                                    f"{getattr(code, 'co_qualname', code.co_name)} "
                                    f"({Path(code.co_filename).name}:{code.co_firstlineno})"))

    def _watch(self, threshold_s: float = 0.03) -> None:
        """A diagnosis thread: when the UI has not ticked for threshold_s, note every thread's stack once."""
        import sys as _sys
        import threading
        import traceback

        noted = -1
        while self._watching:
            time.sleep(0.005)
            gap_index = len(self.gaps)
            if gap_index != noted and time.perf_counter() - self._last > threshold_s:
                noted = gap_index
                names = {thread.ident: thread.name for thread in threading.enumerate()}
                lines = []
                for ident, frame in _sys._current_frames().items():
                    if ident == threading.get_ident():
                        continue
                    where = traceback.extract_stack(frame)[-DEPTH:]
                    label = "UI" if ident == self._ui_thread else names.get(ident, str(ident))
                    lines.append(f"    [{label}] " + " <- ".join(
                        f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(where)))
                self.stacks[gap_index] = "\n".join(lines)

    def stop(self) -> dict:
        self._tick()  # the gap up to now counts too
        self._timer.stop()
        worst = max(range(len(self.gaps)), key=self.gaps.__getitem__)
        if WATCH:
            sys.setprofile(None)
            self._watching = False
            self._watcher.join()
            begin = self._started + self.at[worst]
            end = begin + (self.gaps[worst] + self.interval_ms) / 1000
            inside = sorted(((b2 - b1) * 1000, name) for b1, b2, name in self._slots if b2 > begin and b1 < end)
            slow = sorted(((b2 - b1) * 1000, name) for b1, b2, name in self._slots)[-3:]
            text = "    Python callables the event loop ran in that gap: " + (", ".join(
                f"{name} {ms:.1f} ms" for ms, name in inside[-5:][::-1]) or "none (the time was in Qt/C++ or waiting)")
            text += "\n    slowest callables in the whole round: " + ", ".join(
                f"{name} {ms:.1f} ms" for ms, name in slow[::-1])
            self.stacks[worst] = text + ("\n" + self.stacks[worst] if worst in self.stacks else "")
        own = [max(0.0, gap - wait) for gap, wait in zip(self.gaps, self.wait)]
        return {"stall_ms": self.gaps[worst], "stall_cpu_ms": self.cpu[worst], "stall_wait_ms": self.wait[worst],
                "own_stall_ms": max(own),
                "stall_at_s": self.at[worst], "max_cpu_ms": max(self.cpu), "ticks": len(self.gaps),
                "stack": self.stacks.get(worst, ""), "seconds": time.perf_counter() - self._started}


def run_until(condition, timeout_s: float, poll_ms: int = 10) -> bool:
    """Run the real (blocking) Qt event loop until condition() is true or the time is up."""
    from PySide6.QtCore import QEventLoop, QTimer

    if condition():
        return True
    deadline = time.perf_counter() + timeout_s
    loop = QEventLoop()
    result = {"ok": False}

    def check() -> None:
        if condition():
            result["ok"] = True
            loop.quit()
        elif time.perf_counter() > deadline:
            loop.quit()

    timer = QTimer()
    timer.setInterval(poll_ms)
    timer.timeout.connect(check)
    timer.start()
    loop.exec()
    timer.stop()
    return result["ok"]


_LOOP_CODES = {run_until.__code__}   # frames whose direct callees are event-loop callbacks
_OWN_CODES = (next(c for c in run_until.__code__.co_consts if getattr(c, "co_name", "") == "check"),
              StallProbe._tick.__code__)   # the bench's own callbacks are not the app's work


def run_for(seconds: float) -> None:
    end = time.perf_counter() + seconds
    run_until(lambda: time.perf_counter() >= end, seconds + 5)


# -- the start-up driver (a subprocess of the bench) -----------------------------------------------------------------
def _driver() -> int:
    started = time.time()
    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root))
    result_path = Path(os.environ["LLAMADESK_PROBE_RESULT"])
    stay_s = float(os.environ.get("LLAMADESK_PROBE_STAY_S", "6"))

    import desktop.app as app_module
    from PySide6.QtCore import QEvent, QObject, QTimer
    from PySide6.QtWidgets import QApplication

    seen: dict[str, float] = {"driver_started": started}
    watch_s = float(os.environ.get("LLAMADESK_PROBE_WATCH_S", "3"))
    probe: list[StallProbe] = []

    class FirstShow(QObject):
        def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt's name
            kind = event.type()
            if kind == QEvent.Type.Expose and "expose" not in seen:
                handle = getattr(watched, "isExposed", None)
                if handle is not None and watched.isExposed() and watched.title() == "LlamaDesk":
                    seen["expose"] = time.time()
            elif kind == QEvent.Type.Paint and "paint" not in seen and type(watched).__name__ == "MainWindow":
                seen["paint"] = time.time()
                QTimer.singleShot(0, self._report)
            return False

        def _stalls(self) -> None:
            result = probe[0].stop()
            result_path.with_suffix(".stalls.json").write_text(json.dumps(result))

        def _report(self) -> None:
            """Runs right after the first paint event was handled: the window is visible."""
            seen["painted"] = time.time()
            seen.setdefault("expose", seen["paint"])
            probe.append(StallProbe())   # the event loop from here on, for watch_s
            probe[0].start()
            QTimer.singleShot(int(watch_s * 1000), self._stalls)
            result_path.write_text(json.dumps(seen))
            QTimer.singleShot(int(stay_s * 1000), QApplication.quit)

    _LOOP_CODES.add(app_module._exec_and_close.__code__)   # the app's own app.exec(), for the diagnosis
    original = app_module.create_application
    keep: list[QObject] = []

    def create_application(*args, **kwargs):
        application = original(*args, **kwargs)
        watcher = FirstShow()
        keep.append(watcher)
        application.installEventFilter(watcher)
        return application

    app_module.create_application = create_application
    return app_module.main([])


if __name__ == "__main__":
    sys.exit(_driver())
