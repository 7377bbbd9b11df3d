"""Exact memory figures: llama.cpp's own no_alloc dry run, in a short-lived subprocess.

llama.cpp loads the model's header with `no_alloc=True` and `load_mode=NONE`, places every layer on a
device, sizes the KV cache and reserves the compute graphs — allocating nothing (ARCHITECTURE §4). We
read what it decided from its log:

- which device each layer landed on (`load_tensors: layer N assigned to device X`, a debug line), and
  which tensors an override sent elsewhere (`tensor X (...) buffer type overridden to CPU`: MoE experts);
- KV cache totals (`llama_kv_cache: size = ...`) and which device holds each layer's cells;
- recurrent-state buffers (`llama_memory_recurrent: X RS buffer size = ...`);
- compute buffers per buffer type (`sched_reserve: X compute buffer size = ...`; a re-reserve replaces one);
- the output buffer (`llama_context: X output buffer size = ...`).

The buffer-size lines are read with the engine's own parser of llama.cpp's log (core.engine.native_log: its
pattern and buffer-type-to-device names), the one a real load's allocations come from.

Workers' devices have two names in that log: the layer and KV lines number them across the process ("RPC0",
"RPC1": one per attached device), the buffer lines by their index on their server plus its address
("RPC0[10.0.0.5:50052]", "RPC0[10.0.0.6:50052]"). The "using device RPC1 (10.0.0.6:50052)" lines link the two;
results use the buffer name, which is also the planner's name for a worker's device (core.machine.rpc.buffer_name).

Model buffers print 0.00 under no_alloc, so weights per device are summed from the GGUF tensor table
following llama.cpp's placement of those layers, less the tensors it says it leaves unloaded ("model has
unused tensor ...": the MTP blocks). A header-only sparse stub gives the same figures as the
real file, so this works for remote files from their header alone.

The dry run runs in a subprocess: llama.cpp aborts the process on internal asserts.
"""
from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Callable

from core.engine.native_log import _BUFFER as BUFFER_LINE, device_name as native_device_name
from core.machine.rpc import buffer_name
from core.gguf.reader import ModelInfo, read_model_info
from core.fit.estimate import DeviceMemory, MemorySettings, footprint, weights_by_device
from core.gguf.kv_types import kv_type_id

log = logging.getLogger(__name__)

MiB = 1024 * 1024
DEFAULT_TIMEOUT_S = 120.0
LOG_TAIL_LINES = 12
HOST = "CPU"


class DryRunError(RuntimeError):
    """llama.cpp refused the model or the settings; the message ends with the tail of its log."""


@dataclass(frozen=True)
class DryRunResult:
    """llama.cpp's own figures, per device (the host last)."""

    devices: tuple[DeviceMemory, ...]
    layer_devices: tuple[str, ...]   # device of each repeating layer, then of the output layer
    n_ctx: int                       # after llama.cpp's padding

    def device(self, name: str) -> DeviceMemory:
        for device in self.devices:
            if device.name == name:
                return device
        raise KeyError(name)

    @property
    def host(self) -> DeviceMemory:
        return self.device(HOST)


# --- parent side -------------------------------------------------------------------------------------

def dry_run(path: str | os.PathLike, settings: MemorySettings, *, rpc_endpoints: tuple[str, ...] = (),
            model: ModelInfo | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> DryRunResult:
    """Run llama.cpp's dry run for `path` under `settings` in a subprocess and collect its figures.

    `rpc_endpoints` ("127.0.0.1:PORT") are attached before loading, so their devices take layers like GPUs.
    """
    path_text = os.fspath(path)
    model = model or read_model_info(path_text)
    request = {"path": path_text, "settings": asdict(settings), "rpc": list(rpc_endpoints)}
    lines = _run_child(request, timeout_s)
    result = parse_log(lines, model, settings)
    log.debug("dry run of %s: %s", path_text, ", ".join(f"{d.name} {d.total_bytes / MiB:.1f} MiB"
                                                       for d in result.devices))
    return result


def _run_child(request: dict, timeout_s: float) -> list[tuple[int, str]]:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    try:
        done = subprocess.run([sys.executable, "-m", "core.fit.dry_run"], input=json.dumps(request),
                              capture_output=True, text=True, timeout=timeout_s, env=env,
                              cwd=_project_root())
    except subprocess.TimeoutExpired as error:
        raise DryRunError(f"llama.cpp's dry run took longer than {timeout_s:.0f} s and was stopped.") from error
    lines = _decode_lines(done.stdout)
    if done.returncode != 0:
        tail = "\n".join(part for part in (_tail(lines), done.stderr.strip()[-1500:]) if part)
        raise DryRunError(f"llama.cpp could not plan {request['path']} with these settings "
                          f"(exit code {done.returncode}). Its last words:\n{tail}")
    return lines


def _project_root() -> str:
    return str(Path(__file__).resolve().parents[2])


def _decode_lines(stdout: str) -> list[tuple[int, str]]:
    lines = []
    for raw in stdout.splitlines():
        try:
            level, text = json.loads(raw)
        except (ValueError, TypeError):
            continue
        lines.append((int(level), str(text)))
    return lines


def _tail(lines: list[tuple[int, str]]) -> str:
    wanted = [text.rstrip() for level, text in lines if level >= 2 and text.strip()]
    return "\n".join(wanted[-LOG_TAIL_LINES:])


# --- reading the log ---------------------------------------------------------------------------------

_NUMBER = r"([0-9]+(?:\.[0-9]+)?)"
_LAYER_DEVICE = re.compile(r"load_tensors: layer\s+(\d+) assigned to device (\S+?),")
_KV_LAYER = re.compile(r"llama_kv_cache: layer\s+(\d+): dev = (\S+)")
_KV_SIZE = re.compile(r"llama_kv_cache: size =\s*" + _NUMBER + r" MiB \(\s*(\d+) cells")
_N_CTX = re.compile(r"llama_context: n_ctx\s+=\s*(\d+)")
_OVERRIDDEN = re.compile(r"tensor (\S+) \(.*\) buffer type overridden to (\S+)")
_USING_RPC = re.compile(r"using device (RPC\d+) \((\S+?:\d+)\)")
_UNUSED = re.compile(r"model has unused tensor (\S+) \(size = \d+ bytes\) -- ignoring")


def _mib(text: str) -> int:
    return round(float(text) * MiB)


def parse_log(lines: list[tuple[int, str]], model: ModelInfo, settings: MemorySettings) -> DryRunResult:
    """Turn llama.cpp's log lines (level, text) into per-device figures."""
    texts = "".join(text for _, text in lines).splitlines()
    device_name = _device_namer(texts)
    layer_devices = _layer_devices(texts, model.n_layers, device_name)
    if not layer_devices:
        raise DryRunError("llama.cpp's log did not say where the layers went:\n" + _tail(lines))
    devices = [d for d in dict.fromkeys(layer_devices) if d != HOST]
    skipped = frozenset(m.group(1) for m in map(_UNUSED.search, texts) if m)
    weights = weights_by_device(footprint(model, skipped), layer_devices)
    _move_overridden(texts, model, layer_devices, weights, device_name)
    buffers = _buffers_by_device(texts, device_name)
    kv = _kv_by_device(texts, model, buffers.get("RS", {}), device_name)
    compute, other = buffers.get("compute", {}), buffers.get("output", {})
    n_ctx = next((int(m.group(1)) for m in map(_N_CTX.search, texts) if m), settings.n_ctx)
    result = []
    for name in devices + [HOST]:
        result.append(DeviceMemory.of(name, "host" if name == HOST else "gpu", weights.get(name, 0),
                                      kv.get(name, 0), compute.get(name, 0), other.get(name, 0)))
    return DryRunResult(tuple(result), tuple(layer_devices), n_ctx)


def _device_namer(texts: list[str]) -> Callable[[str], str]:
    """Names as llama.cpp logs them (a buffer type, or a process-wide "RPC1") -> one name per device."""
    aliases: dict[str, str] = {}
    per_server: dict[str, int] = defaultdict(int)
    for match in map(_USING_RPC.search, texts):
        if match:
            device, endpoint = match.groups()
            aliases[device] = buffer_name(endpoint, per_server[endpoint])
            per_server[endpoint] += 1

    def name(logged: str) -> str:
        device = native_device_name(logged)
        return aliases.get(device, device)
    return name


def _move_overridden(texts: list[str], model: ModelInfo, layer_devices: list[str], weights: dict[str, int],
                     device_name: Callable[[str], str]) -> None:
    """Tensors a buffer-type override sent elsewhere than their layer (expert tensors kept on the host)."""
    sizes = {t.name: (t.n_bytes, t.layer) for t in model.tensors}
    for match in map(_OVERRIDDEN.search, texts):
        if not match or match.group(1) not in sizes:
            continue
        size, layer = sizes[match.group(1)]
        source = layer_devices[layer] if layer is not None else HOST
        target = device_name(match.group(2))
        weights[source] = weights.get(source, 0) - size
        weights[target] = weights.get(target, 0) + size


def _layer_devices(texts: list[str], n_layers: int, device_name: Callable[[str], str]) -> list[str]:
    by_layer: dict[int, str] = {}
    for text in texts:
        match = _LAYER_DEVICE.search(text)
        if match:
            by_layer[int(match.group(1))] = device_name(match.group(2))
    if len(by_layer) < n_layers + 1:
        return []
    return [by_layer[i] for i in range(n_layers + 1)]


def _kv_by_device(texts: list[str], model: ModelInfo, recurrent: dict[str, int],
                  device_name: Callable[[str], str]) -> dict[str, int]:
    """Split each cache's logged total over the devices holding its layers, by each layer's KV width; the
    recurrent state counts as cache too (as the estimate counts it)."""
    widths = _kv_widths(model)
    totals: dict[str, int] = defaultdict(int, recurrent)
    pending: list[tuple[int, str]] = []
    for text in texts:
        layer = _KV_LAYER.search(text)
        if layer:
            pending.append((int(layer.group(1)), device_name(layer.group(2))))
            continue
        size = _KV_SIZE.search(text)
        if size:
            _share(totals, _mib(size.group(1)), pending, widths)
            pending = []
    return dict(totals)


def _kv_widths(model: ModelInfo) -> list[int]:
    heads = model.head_count_kv_per_layer()
    return [max(h, 0) for h in heads] + [0] * max(0, model.n_layers - len(heads))


def _share(totals: dict[str, int], total: int, layers: list[tuple[int, str]], widths: list[int]) -> None:
    if not layers:
        totals[HOST] += total
        return
    weights = [widths[il] if il < len(widths) and widths[il] > 0 else 1 for il, _ in layers]
    whole = sum(weights)
    given = 0
    for index, ((_, device), weight) in enumerate(zip(layers, weights)):
        part = total - given if index == len(layers) - 1 else total * weight // whole
        totals[device] += part
        given += part


def _buffers_by_device(texts: list[str], device_name: Callable[[str], str]) -> dict[str, dict[str, int]]:
    """Bytes per buffer kind ("RS", "output", "compute", ...) and device from llama.cpp's buffer-size lines; the
    last figure of a compute buffer counts (a re-reserve replaces it)."""
    summed: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    compute: dict[str, int] = {}
    for text in texts:
        match = BUFFER_LINE.match(text)
        if not match:
            continue
        _, buffer, kind, mib = match.groups()
        if kind == "compute":
            compute[buffer] = _mib(mib)
        else:
            summed[kind][device_name(buffer)] += _mib(mib)
    for buffer, size in compute.items():
        summed["compute"][device_name(buffer)] += size
    return {kind: dict(devices) for kind, devices in summed.items()}


# --- child side --------------------------------------------------------------------------------------

def _child_main() -> int:
    request = json.loads(sys.stdin.read())
    settings = MemorySettings(**request["settings"])
    import ctypes

    import llama_cpp

    def emit(level: int, text: bytes, _user) -> None:
        sys.stdout.write(json.dumps([level, text.decode("utf-8", "replace")]) + "\n")
        sys.stdout.flush()  # llama.cpp may abort the process: keep every line written so far

    callback = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)(emit)
    llama_cpp.llama_log_set(callback, None)
    llama_cpp.llama_backend_init()
    if request["rpc"]:
        from core.machine import rpc

        rpc.attach_servers(tuple(request["rpc"]))
    model = _load_model(llama_cpp, request["path"], settings)
    context = llama_cpp.llama_init_from_model(model, _context_params(llama_cpp, settings))
    sys.stdout.flush()
    if not context:
        llama_cpp.llama_model_free(model)
        return 3
    llama_cpp.llama_free(context)
    llama_cpp.llama_model_free(model)
    sys.stdout.flush()
    return 0


def _load_model(llama_cpp, path: str, settings: MemorySettings):
    params = llama_cpp.llama_model_default_params()
    params.no_alloc = True
    params.load_mode = llama_cpp.LLAMA_LOAD_MODE_NONE
    params.n_gpu_layers = settings.n_gpu_layers
    from core.engine.llama_runtime import keep_experts_on_host

    keep_experts_on_host(params, settings.cpu_expert_layers)
    model = llama_cpp.llama_model_load_from_file(path.encode(), params)
    if not model:
        sys.stdout.flush()
        sys.exit(2)
    return model


def _context_params(llama_cpp, settings: MemorySettings):
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = settings.n_ctx
    params.n_batch = settings.n_batch
    params.n_ubatch = settings.n_ubatch
    params.n_seq_max = settings.n_seq
    params.type_k = kv_type_id(settings.kv_type)
    params.type_v = kv_type_id(settings.kv_type)
    params.flash_attn_type = (llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if settings.flash_attn
                              else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
    params.swa_full = settings.swa_full
    params.n_threads = 1
    params.n_threads_batch = 1
    return params


if __name__ == "__main__":
    sys.exit(_child_main())
