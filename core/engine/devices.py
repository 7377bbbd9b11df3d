"""ggml's device list as the worker sees it: which backend received the offloaded layers.

Read through ctypes on the very libggml llama.cpp uses (core.machine.hardware.build_library picks the
soname file, ARCHITECTURE §4). RPC servers join the list through core.machine.rpc.attach_servers.
"""
from __future__ import annotations

import logging
import re

from core.machine import hardware

log = logging.getLogger(__name__)

DEVICE_TYPE_CPU = 0
_INDEX_AND_ENDPOINT = re.compile(r"[0-9]*(\[.*\])?$")
_FAMILY_NAMES = {"MTL": "Metal"}


def offload_devices() -> list[str]:
    """Names of the devices layers can go to (every device but the CPU), e.g. ["CUDA0"], ["RPC0"]."""
    try:
        ggml = hardware.ggml_library()
    except (OSError, hardware.HardwareError) as error:
        log.warning("cannot list ggml devices: %s", error)
        return []
    names = []
    for index in range(ggml.ggml_backend_dev_count()):
        device = ggml.ggml_backend_dev_get(index)
        if ggml.ggml_backend_dev_type(device) != DEVICE_TYPE_CPU:
            names.append((ggml.ggml_backend_dev_name(device) or b"").decode("utf-8", errors="replace"))
    return names


def backend_name(n_gpu_layers: int) -> str:
    """"CPU" when no layer is offloaded, else the family of the first offload device ("CUDA", "RPC" ...)."""
    devices = offload_devices() if n_gpu_layers != 0 else []
    if not devices:
        return "CPU"
    family = _INDEX_AND_ENDPOINT.sub("", devices[0]) or devices[0]
    return _FAMILY_NAMES.get(family, family)
