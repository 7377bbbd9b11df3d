"""Where a vision model's projector goes, decided in one place for the engine (which loads it there) and the planner
(which counts it there). Plain Python: the planner imports it without loading llama.cpp."""
from __future__ import annotations


def projector_uses_gpu(n_gpu_layers: int) -> bool:
    """On the GPU when the model's layers go there too, else in host memory."""
    return n_gpu_layers != 0
