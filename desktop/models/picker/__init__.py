"""The model picker: Recommended (the catalog), Search (the hub) and On this computer (the local library),
each file fit-checked for this machine, with a details pane and a downloads list.

    picker = ModelPicker(settings)            # the lead puts it in a window; Ctrl+K / "Models…" open it
    picker.load_requested.connect(main_window.open_model)
    picker.notice.connect(lambda level, sentence: ...)
    picker.open_on_first_run()                # Recommended, filtered to what fits

ModelPicker is imported on first use, so the fit-check worker processes (desktop.models.picker.work) start
without loading Qt.
"""
from __future__ import annotations

__all__ = ["ModelPicker"]


def __getattr__(name: str):
    if name == "ModelPicker":
        from desktop.models.picker.picker import ModelPicker

        return ModelPicker
    raise AttributeError(name)
