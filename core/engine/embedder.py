"""An embedding model as a callable from texts to unit vectors (core.chat.attachments.meaning's `embed`).

It loads on first use in an engine worker of its own, on the CPU: embedding models are small, and the chat model keeps
the GPU. A text longer than the model reads at once (often 512 tokens) is embedded from its beginning.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Sequence

from core.engine.client import EngineClient
from core.engine.protocol import LoadSettings

EMBED_CHARS = 8000             # bounds the tokenizing of a huge text whose end is cut anyway
EMBEDDING_CONTEXT = 2048


class Embedder:
    """Calls from any thread take turns; close() ends the worker."""

    def __init__(self, model_path: Path | str, threads: int | None = None) -> None:
        self.model_path = Path(model_path)
        self.threads = threads
        self._engine: EngineClient | None = None
        self._lock = threading.Lock()

    def __call__(self, texts: Sequence[str]) -> list[tuple[float, ...]]:
        """A unit vector per text; EngineError when the model cannot be loaded or cannot read a text."""
        with self._lock:
            return list(self._loaded().embed([text[:EMBED_CHARS] for text in texts], truncate=True).vectors)

    def _loaded(self) -> EngineClient:
        if self._engine is None:
            engine = EngineClient()
            engine.load(LoadSettings(str(self.model_path), n_gpu_layers=0, n_ctx=EMBEDDING_CONTEXT,
                                     n_threads=self.threads, embeddings=True), step_down=False)
            self._engine = engine
        return self._engine

    def close(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.close()
                self._engine = None
