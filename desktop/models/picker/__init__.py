"""The model picker: Recommended (the catalog), Search (the hub) and On this computer (the local library),
each file fit-checked for this machine, with a details pane and a downloads list.

    picker = ModelPicker(settings)            # the lead puts it in a window; Ctrl+K / "Models…" open it
    picker.load_requested.connect(main_window.open_model)
    picker.notice.connect(lambda level, sentence: ...)
    picker.open_on_first_run()                # Recommended, filtered to what fits
"""
from desktop.models.picker.picker import ModelPicker

__all__ = ["ModelPicker"]
