"""The model picker: Recommended / Search / On this computer / Remote, a details pane and the downloads list.

    picker = ModelPicker(settings)                       # probes the machine itself, or pass hardware=...
    picker.load_requested.connect(window.open_model)     # the path of a verified file on disk
    picker.remote_model_chosen.connect(window.use_remote)  # (RemoteEndpoint, model id) from the Remote tab
    picker.notice.connect(window.show_notice)            # ("info" | "error", a sentence)
    picker.open_on_first_run()                           # Recommended, filtered to what fits

Everything that reads disk, talks to the hub or plans a list runs in desktop.tasks.Task; the picker only shows
what core returns. Work starts the first time the picker is shown.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (QCheckBox, QFrame, QHBoxLayout, QLabel, QMessageBox, QSplitter, QTabWidget,
                               QVBoxLayout, QWidget)

from core.fit import calibration
from core.machine import hardware as hardware_probe
from core.models.catalog import Catalog
from core.models.downloads.manager import DownloadManager, DownloadProgress, DownloadState
from core.machine.hardware import HardwareSnapshot
from core.models.remote_headers import HeaderCache
from core.models.library import LibrarySources, LocalModel
from core.fit.choice import choice_from_settings
from core.settings import Settings
from core.platform.units import format_bytes
from desktop import theme
from desktop.models.picker import style, work
from desktop.models.picker.details_pane import DetailsPane
from desktop.models.picker.download_queue import DownloadQueue
from desktop.models.picker.downloads_list import DownloadsList
from desktop.models.picker.file_list_tab import FileListTab
from desktop.models.picker.local_tab import LocalTab
from desktop.models.picker.remote_tab import RemoteTab
from desktop.models.picker.rows import PickerRow, row_from_local, rows_from_catalog, rows_from_listing, with_local_copies
from desktop.models.picker.search_tab import SearchTab
from desktop.tasks import Task

RECOMMENDED, SEARCH, LOCAL, REMOTE = range(4)
RESCAN_DELAY_MS = 300


def measured_machine() -> HardwareSnapshot:
    """This machine, with the host's memory bandwidth (measured once, ~0.3 s, then cached) for predicted speeds."""
    return hardware_probe.probe(measure_bandwidth=True)


def machine_text(snapshot: HardwareSnapshot) -> str:
    gpus = [f"{g.name} ({format_bytes(g.free_bytes)} free)" for g in snapshot.gpus]
    host = f"{format_bytes(snapshot.host.ram_available_bytes)} RAM free"
    return "Planned for this machine: " + " · ".join([*gpus, host] if gpus else ["no usable GPU", host])


class ModelPicker(theme.FollowsLook, QWidget):
    load_requested = Signal(str)       # the path of a verified model file on this computer
    notice = Signal(str, str)          # level "info" | "error", a sentence
    remote_model_chosen = Signal(object, str)  # RemoteEndpoint, model id: chat through another computer's server

    def __init__(self, settings: Settings | None = None, *, hardware: HardwareSnapshot | None = None,
                 downloads: DownloadManager | None = None, library_sources: LibrarySources | None = None,
                 header_cache: HeaderCache | None = None, catalog_path: Path | None = None,
                 refresh_catalog: bool = True, parent: QWidget | None = None, debounce_ms: int | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("modelPicker")
        self.setAccessibleName("Model picker")
        self.settings = settings or Settings()
        self.hardware = hardware
        self.cache = header_cache or HeaderCache()
        self.sources = library_sources or LibrarySources(
            user_dirs=tuple(Path(folder).expanduser() for folder in self.settings.model_folders))
        self.catalog_path = catalog_path
        self.refresh_wanted = refresh_catalog
        self.catalog: Catalog | None = None
        self._learned_margin: int | None = None   # from this machine's loads, once read (core.fit.calibration)
        self.library: list[LocalModel] = []
        self.queue = DownloadQueue(downloads, self)
        self.workers = work.WorkerProcesses()
        self.destroyed.connect(self.workers.close)
        self._started = False
        self._look = ""
        self._rescan_timer = QTimer(self, singleShot=True, interval=RESCAN_DELAY_MS)
        self._rescan_timer.timeout.connect(self.rescan_library)
        self._build(debounce_ms)
        self._lay_out()
        self._connect()
        self.follow_look()

    # -- building ------------------------------------------------------------------------------------------------
    def _build(self, debounce_ms: int | None) -> None:
        self.fits_only = QCheckBox("&Fits this machine")
        self.fits_only.setAccessibleName("Show only files that fit this machine")
        self.machine = QLabel("Reading this machine's memory…")
        self.machine.setObjectName("pickerMachine")
        self.machine.setAccessibleName("Machine the fit is planned for")
        self.machine.setWordWrap(True)
        self.recommended = FileListTab("Recommended")
        self.search = SearchTab()
        self.local = LocalTab()
        self.remote = RemoteTab()
        self.tabs = QTabWidget()
        self.tabs.setObjectName("pickerTabs")
        self.tabs.setAccessibleName("Model lists")
        self.tabs.addTab(self.recommended, "&Recommended")
        self.tabs.addTab(self.search, "&Search")
        self.tabs.addTab(self.local, "On this &computer")
        self.tabs.addTab(self.remote, "Rem&ote")
        self.details = DetailsPane(debounce_ms=debounce_ms) if debounce_ms is not None else DetailsPane()
        self.downloads = DownloadsList()

    def _lay_out(self) -> None:
        header = QHBoxLayout()
        header.addWidget(self.fits_only)
        header.addSpacing(12)
        header.addWidget(self.machine, 1)
        downloads_box = QFrame()
        downloads_box.setObjectName("pickerDownloadsBox")
        box = QVBoxLayout(downloads_box)
        box.setContentsMargins(8, 6, 8, 8)
        title = QLabel("Downloads")
        title.setObjectName("pickerDownloadsTitle")
        title.setAccessibleName("Downloads title")
        box.addWidget(title)
        box.addWidget(self.downloads, 1)
        downloads_box.setMinimumHeight(150)
        left = QSplitter(Qt.Orientation.Vertical)
        left.addWidget(self.tabs)
        left.addWidget(downloads_box)
        left.setStretchFactor(0, 3)
        left.setStretchFactor(1, 1)
        left.setSizes([560, 190])
        main = QSplitter(Qt.Orientation.Horizontal)
        main.addWidget(left)
        main.addWidget(self.details)
        main.setStretchFactor(0, 2)
        main.setStretchFactor(1, 1)
        main.setSizes([780, 380])  # the lists get most of the width: model and file names must stay readable
        self.details.setMinimumWidth(320)  # its controls whole when the window is narrow (~900 px)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 10)
        layout.addLayout(header)
        layout.addWidget(main, 1)
        QWidget.setTabOrder(self.fits_only, self.tabs)
        QWidget.setTabOrder(self.tabs, self.recommended.table)
        QWidget.setTabOrder(self.local.delete_button, self.details.context_slider)

    def _connect(self) -> None:
        self.fits_only.toggled.connect(self._filter_changed)
        self.tabs.currentChanged.connect(self._tab_changed)
        self.remote.model_chosen.connect(self.remote_model_chosen)
        for tab in self._tabs():
            tab.table.selected_changed.connect(self._select_from(tab))
            tab.row_changed.connect(self._row_changed)
        self.search.search_requested.connect(self._search)
        self.search.repo_chosen.connect(self._list_repo)
        self.local.refresh_requested.connect(self.rescan_library)
        self.local.delete_requested.connect(self._confirm_delete)
        self.details.download_clicked.connect(self._download)
        self.details.load_clicked.connect(self._load)
        self.queue.progressed.connect(self._download_progressed)
        self.queue.failed_to_start.connect(self._download_not_started)
        self.downloads.pause_clicked.connect(self.queue.pause)
        self.downloads.resume_clicked.connect(self.queue.resume)
        self.downloads.cancel_clicked.connect(self.queue.cancel)

    # -- public --------------------------------------------------------------------------------------------------
    def open_on_first_run(self) -> None:
        """First run with no model: Recommended, filtered to what fits this machine."""
        self.tabs.setCurrentIndex(RECOMMENDED)
        self.fits_only.setChecked(True)
        self.start()

    def start(self) -> None:
        """Read the machine, the catalog, the library and the saved downloads (once; showing the picker does it)."""
        if self._started:
            return
        self._started = True
        if self.hardware is None:
            self._background(measured_machine, done=self._machine_known,
                             failed=lambda error: self._failed("Could not read this machine's memory", error))
        else:
            self._machine_known(self.hardware)
        self._background(work.load_catalog, self.catalog_path, done=self._catalog_loaded,
                         failed=lambda error: self._failed("Could not read the model catalog", error))
        self.rescan_library()
        self.remote.set_endpoints(self.settings.remote_endpoints)
        self._background(self._restore_downloads, done=self._downloads_restored)
        self._background(calibration.learned_margin_bytes, done=self._margin_learned)

    def set_settings(self, settings: Settings) -> None:
        """New settings (context, KV type, safety margin, model folders): re-plan every list, look again on disk."""
        self.settings = settings
        self.sources = replace(self.sources, user_dirs=tuple(Path(f).expanduser() for f in settings.model_folders))
        if self._started:
            for tab in self._tabs():
                tab.refit(self.planning())
            self.rescan_library()
            self.remote.set_endpoints(settings.remote_endpoints)

    def shutdown(self) -> None:
        """Stop fit checks and pause downloads (their bytes are kept and resume next time)."""
        for tab in self._tabs():
            tab.checker.stop()
        self.workers.close()
        self.queue.close()

    def planning(self) -> work.Planning | None:
        if self.hardware is None:
            return None
        margin = self.settings.safety_margin_bytes
        if self.settings.learned_margin and self._learned_margin is not None:
            margin = self._learned_margin
        return work.Planning(self.hardware, choice_from_settings(self.settings), margin,
                             self.cache, self.workers)

    def rescan_library(self) -> None:
        self._background(work.scan_library, self.sources, self.workers, done=self._library_scanned,
                         failed=lambda error: self._failed("Could not look for models on this computer", error))

    # -- Qt events -----------------------------------------------------------------------------------------------
    def showEvent(self, event) -> None:
        super().showEvent(event)  # follows the look first
        self.start()

    def follow_look(self) -> None:
        look = theme.look_now()
        if look == self._look:
            return
        self._look = look
        self.setStyleSheet(style.style_sheet(look))
        for tab in self._tabs():
            tab.table.source.set_dark(look == "dark")

    # -- lists ---------------------------------------------------------------------------------------------------
    def _tabs(self) -> tuple[FileListTab, ...]:
        return (self.recommended, self.search, self.local)

    def _current_tab(self) -> FileListTab | None:
        """The file list in view; None on the Remote tab (its models have no file to plan)."""
        current = self.tabs.currentWidget()
        return current if isinstance(current, FileListTab) else None

    def _tab_changed(self, _index: int) -> None:
        tab = self._current_tab()
        self.details.setVisible(tab is not None)  # a remote model has no file to plan: its tab has its own Load
        self._select(tab.table.selected_row() if tab is not None else None)

    def _machine_known(self, snapshot: HardwareSnapshot) -> None:
        self.hardware = snapshot
        self.machine.setText(machine_text(snapshot))
        for tab in self._tabs():
            tab.refit(self.planning())

    def _margin_learned(self, learned: int | None) -> None:
        """The GPU margin this machine's loads taught (core.fit.calibration): plans use it when the settings let them."""
        if learned == self._learned_margin:
            return
        self._learned_margin = learned
        if self.settings.learned_margin and self.hardware is not None:
            for tab in self._tabs():
                tab.refit(self.planning())

    def _catalog_loaded(self, catalog: Catalog) -> None:
        first = self.catalog is None
        self.catalog = catalog
        rows = with_local_copies(rows_from_catalog(catalog), self.library)
        if first:
            self.recommended.show_rows(rows, self.planning())
            if self.refresh_wanted:
                self._background(work.refresh_catalog, catalog, done=self._catalog_refreshed)
        else:
            self.recommended.update_rows(rows, self.planning())

    def _catalog_refreshed(self, catalog: Catalog) -> None:
        if self.catalog is None or catalog.models != self.catalog.models:
            self._catalog_loaded(catalog)

    def _library_scanned(self, models: list[LocalModel]) -> None:
        self.library = models
        self.local.update_rows([row_from_local(model) for model in models], self.planning())
        self.recommended.apply_library(models)
        self.search.apply_library(models)

    def _filter_changed(self, on: bool) -> None:
        for tab in self._tabs():
            tab.table.filter.set_only_fitting(on)
            tab.show_count()

    def _search(self, text: str, sort: str) -> None:
        self.search.status.setText("Searching the hub…")
        self._background(work.search_hub, text, sort, done=self.search.show_results, failed=self._search_failed)

    def _search_failed(self, error: BaseException) -> None:
        self.search.status.setText(str(error))
        self.notice.emit("error", str(error))

    def _list_repo(self, repo_id: str) -> None:
        self.search.status.setText(f"Listing the GGUF files of {repo_id}…")
        self._background(work.list_repo, repo_id, done=self._repo_listed, failed=self._search_failed)

    def _repo_listed(self, listing) -> None:
        self.search.show_rows(with_local_copies(rows_from_listing(listing), self.library), self.planning())

    # -- selection and the details pane --------------------------------------------------------------------------
    def _select_from(self, tab: FileListTab):
        return lambda row: self._select(row) if tab is self._current_tab() else None

    def _select(self, row: PickerRow | None) -> None:
        self.details.show_row(row, self.planning(), downloading=self._downloading(row))

    def _row_changed(self, row: PickerRow) -> None:
        if self.details.row is not None and self.details.row.key == row.key:
            self.details.show_row(row, self.planning(), downloading=self._downloading(row))

    def _downloading(self, row: PickerRow | None) -> bool:
        return row is not None and any(not p.state.finished and p.state != DownloadState.PAUSED
                                       for p in self.queue.row_progress(row))

    # -- downloads and loading -----------------------------------------------------------------------------------
    def _download(self, row: PickerRow) -> None:
        self.queue.download(row)
        self.details.set_downloading(True)

    def _download_not_started(self, sentence: str) -> None:
        self.notice.emit("error", sentence)
        if self.details.row is not None:
            self.details.set_downloading(self._downloading(self.details.row))

    def _download_progressed(self, progress: DownloadProgress) -> None:
        self.queue.record(progress)
        self.downloads.show_progress(progress)
        if progress.state == DownloadState.DONE:
            self._rescan_timer.start()
        elif progress.state == DownloadState.FAILED and progress.error:
            self.notice.emit("error", progress.error)
        if self.details.row is not None:
            self.details.set_downloading(self._downloading(self.details.row))

    def _restore_downloads(self) -> list[DownloadProgress]:
        self.queue.manager.restore()
        return self.queue.manager.all()

    def _downloads_restored(self, saved: list[DownloadProgress]) -> None:
        for progress in saved:
            self._download_progressed(progress)

    def _load(self, row: PickerRow) -> None:
        if row.load_path is not None:
            self.load_requested.emit(str(row.load_path))

    def _confirm_delete(self, row: PickerRow) -> None:
        model = row.local
        if model is None:
            return
        answer = QMessageBox.question(
            self, "Delete model", f"Delete {model.name} ({format_bytes(model.size)}) from disk?\n\n{model.path}\n\n"
            "This cannot be undone.", QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel)
        if answer != QMessageBox.StandardButton.Yes:
            return
        self._background(work.delete_model, model, self.sources, done=lambda _removed: self._deleted(model),
                         failed=lambda error: self.notice.emit("error", str(error)))

    def _deleted(self, model: LocalModel) -> None:
        self.notice.emit("info", f"Deleted {model.name} from disk.")
        self.rescan_library()

    def _failed(self, what: str, error: BaseException) -> None:
        self.notice.emit("error", f"{what}: {error}")

    # -- background work -----------------------------------------------------------------------------------------
    def _background(self, function, *args, done, failed=None) -> None:
        """Run ``function(*args)`` in a Task; its answer reaches ``done`` (or ``failed``) while the picker exists."""
        task = Task(function, *args, parent=self).success(done)
        if failed is not None:
            task.failure(failed)
        task.run_in_background()
