"""Remote: the models of the OpenAI-compatible endpoints saved in Settings (llama-server, vLLM, Ollama, LM Studio,
another LlamaDesk), one branch per endpoint. An endpoint that does not answer, or refuses its key, shows why in
its branch; Load asks for the chosen model.

    tab = RemoteTab()
    tab.model_chosen.connect(use)          # (RemoteEndpoint, model id)
    tab.set_endpoints(settings.remote_endpoints)

Each endpoint's list is fetched in a Task (a slow or dead address never holds the window).
"""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

from core.engine.remote_client import RemoteClient
from core.settings import RemoteEndpoint
from desktop.tasks import Task

NO_ENDPOINTS = ("No remote engines yet: add one in Settings (its address, like http://192.168.1.30:8080, and its "
                "API key if it has one). Its models then appear here.")
ASKING = "Asking for its models…"
NO_MODELS = "It serves no models."
ENDPOINT_ROLE = Qt.ItemDataRole.UserRole
MODEL_ROLE = Qt.ItemDataRole.UserRole + 1


def fetch_models(endpoint: RemoteEndpoint) -> list[str]:
    return RemoteClient(endpoint).models()


class RemoteTab(QWidget):
    model_chosen = Signal(object, str)    # RemoteEndpoint, model id

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Remote models")
        self.endpoints: tuple[RemoteEndpoint, ...] = ()
        self.note = QLabel(NO_ENDPOINTS)
        self.note.setObjectName("pickerStatus")
        self.note.setWordWrap(True)
        self.tree = QTreeWidget()
        self.tree.setAccessibleName("Remote engines and their models")
        self.tree.setHeaderHidden(True)
        self.tree.setWordWrap(True)  # an endpoint's sentence (unreachable, refused key) is read whole
        self.refresh_button = QPushButton("&Refresh")
        self.refresh_button.setAccessibleName("Ask the remote engines for their models again")
        self.load_button = QPushButton("&Load")
        self.load_button.setObjectName("primary")
        self.load_button.setAccessibleName("Chat with the selected remote model")
        self.load_button.setEnabled(False)
        buttons = QHBoxLayout()
        buttons.addWidget(self.refresh_button)
        buttons.addStretch(1)
        buttons.addWidget(self.load_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.note)
        layout.addWidget(self.tree, 1)
        layout.addLayout(buttons)
        self.refresh_button.clicked.connect(self.refresh)
        self.load_button.clicked.connect(self._load_clicked)
        self.tree.itemSelectionChanged.connect(lambda: self.load_button.setEnabled(self.chosen() is not None))
        self.tree.itemDoubleClicked.connect(lambda _item, _column: self._load_clicked())

    def set_endpoints(self, endpoints: tuple[RemoteEndpoint, ...]) -> None:
        if tuple(endpoints) != self.endpoints or not self.tree.topLevelItemCount():
            self.endpoints = tuple(endpoints)
            self.refresh()

    def refresh(self) -> None:
        """One branch per endpoint, its models asked for again."""
        self.tree.clear()
        self.note.setVisible(not self.endpoints)
        for endpoint in self.endpoints:
            branch = QTreeWidgetItem([f"{endpoint.label} — {endpoint.url}" if endpoint.name else endpoint.url])
            branch.setData(0, ENDPOINT_ROLE, endpoint)
            branch.setFlags(Qt.ItemFlag.ItemIsEnabled)
            self.tree.addTopLevelItem(branch)
            self._say(branch, ASKING)
            branch.setExpanded(True)
            (Task(fetch_models, endpoint, parent=self)
             .success(lambda models, branch=branch: self._show_models(branch, models))
             .failure(lambda error, branch=branch: self._say(branch, str(error)))
             .run_in_background())

    def chosen(self) -> tuple[RemoteEndpoint, str] | None:
        items = self.tree.selectedItems()
        if not items or items[0].data(0, MODEL_ROLE) is None:
            return None
        return items[0].parent().data(0, ENDPOINT_ROLE), items[0].data(0, MODEL_ROLE)

    def sentences(self) -> list[str]:
        """What each endpoint's branch says instead of models (an error, 'asking', 'none'): for tests and readers."""
        return [branch.child(i).text(0) for branch in self._branches() for i in range(branch.childCount())
                if branch.child(i).data(0, MODEL_ROLE) is None]

    def models(self) -> list[str]:
        return [branch.child(i).data(0, MODEL_ROLE) for branch in self._branches()
                for i in range(branch.childCount()) if branch.child(i).data(0, MODEL_ROLE) is not None]

    def _branches(self) -> list[QTreeWidgetItem]:
        return [self.tree.topLevelItem(i) for i in range(self.tree.topLevelItemCount())]

    def _show_models(self, branch: QTreeWidgetItem, models: list[str]) -> None:
        if not models:
            self._say(branch, NO_MODELS)
            return
        branch.takeChildren()
        for model in models:
            item = QTreeWidgetItem([model])
            item.setData(0, MODEL_ROLE, model)
            item.setToolTip(0, f"{model} on {branch.data(0, ENDPOINT_ROLE).host}")
            branch.addChild(item)

    def _say(self, branch: QTreeWidgetItem, sentence: str) -> None:
        branch.takeChildren()
        item = QTreeWidgetItem([sentence])
        item.setFlags(Qt.ItemFlag.ItemIsEnabled)
        item.setToolTip(0, sentence)
        branch.addChild(item)

    def _load_clicked(self) -> None:
        chosen = self.chosen()
        if chosen is not None:
            self.model_chosen.emit(*chosen)
