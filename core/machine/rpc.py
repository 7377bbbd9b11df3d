"""llama.cpp's RPC backend: lend this machine's memory to another process or machine, or use theirs.

A server (ggml_backend_rpc_start_server) exposes local ggml devices over TCP. A client registers
the endpoint (ggml_backend_rpc_add_server + ggml_backend_register) before loading a model, and
llama.cpp then treats each remote device as a GPU named "RPC<n>" (n counts devices across all
servers attached in the process). Its buffers show in llama.cpp's log as "RPC<k>[host:port]", k
being the device's index on that server. The tests use a local server on the CPU as a GPU-like
device, so per-device memory splits can be checked without a GPU.

C signatures follow the vendored ggml/include/ggml-rpc.h of llama-cpp-python 0.3.36:
    void ggml_backend_rpc_start_server(const char * endpoint, const char * cache_dir,
                                       size_t n_threads, size_t n_devices, ggml_backend_dev_t * devices);
    ggml_backend_reg_t ggml_backend_rpc_add_server(const char * endpoint);
An unreachable endpoint makes ggml abort the whole process, so attach_servers checks first.
"""
from __future__ import annotations

import ctypes
import functools
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from core.machine import hardware

log = logging.getLogger(__name__)

GGML_BACKEND_DEVICE_TYPE_CPU = 0
LOOPBACK = "127.0.0.1"
CONNECT_TIMEOUT_S = 3.0

_attached: dict[str, list[str]] = {}
_attach_lock = threading.Lock()


class RpcError(RuntimeError):
    """An RPC server that cannot be started or reached; the message is a sentence for the user."""


def _ggml() -> ctypes.CDLL:
    try:
        return hardware.ggml_library()
    except hardware.HardwareError as error:
        raise RpcError(str(error)) from None


@functools.lru_cache(maxsize=1)
def _rpc_library() -> ctypes.CDLL:
    try:
        lib = hardware.build_library("ggml-rpc")
    except hardware.HardwareError as error:
        raise RpcError(f"{error} (This llama.cpp build may lack the RPC backend, -DGGML_RPC=on.)") from None
    lib.ggml_backend_rpc_start_server.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t,
                                                  ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p)]
    lib.ggml_backend_rpc_start_server.restype = None
    lib.ggml_backend_rpc_add_server.argtypes = [ctypes.c_char_p]
    lib.ggml_backend_rpc_add_server.restype = ctypes.c_void_p
    return lib


def split_endpoint(endpoint: str) -> tuple[str, int]:
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise RpcError(f"'{endpoint}' is not an RPC endpoint: write it as host:port, e.g. 127.0.0.1:50052.")
    return host, int(port)


def is_listening(endpoint: str, timeout: float = CONNECT_TIMEOUT_S) -> bool:
    """Whether something accepts TCP connections at host:port."""
    try:
        with socket.create_connection(split_endpoint(endpoint), timeout=timeout):
            return True
    except OSError:
        return False


def _reachable(endpoint: str) -> str:
    """Where this computer reaches a server bound to endpoint: 0.0.0.0 (all interfaces) via loopback."""
    host, port = split_endpoint(endpoint)
    return f"{LOOPBACK}:{port}" if host == "0.0.0.0" else endpoint


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# Server side

STDERR = "-"  # serve_forever's log_path that sends the server's output to this process's stderr
GGML_BACKEND_DEVICE_TYPE_ACCEL = 3
# ggml_backend_device starts with its interface, a struct of function pointers: get_name,
# get_description, get_memory, ... (ggml-backend-impl.h); the third is what the server reports.
_GET_MEMORY_SLOT = 2
_GetMemory = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t),
                              ctypes.POINTER(ctypes.c_size_t))
_memory_caps: list[Any] = []  # the C side keeps pointers to these callbacks for the process's lifetime


def _redirect_output(log_path: str) -> None:
    """Send the C library's printf output (fd 1 and 2) to a file, or fd 1 to stderr for STDERR."""
    if log_path == STDERR:
        os.dup2(2, 1)
        return
    target = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(target, 1)
    os.dup2(target, 2)
    os.close(target)


def device_names() -> list[str]:
    """The ggml devices this computer could serve, e.g. ['CUDA0', 'CPU']."""
    ggml = _ggml()
    ggml.ggml_backend_load_all()
    devices = (ggml.ggml_backend_dev_get(i) for i in range(ggml.ggml_backend_dev_count()))
    return [_decode(ggml.ggml_backend_dev_name(device)) for device in devices]


def serving_devices(names: Sequence[str]) -> list[int]:
    """The named devices; with no names, every GPU, else the CPU (as llama.cpp's rpc-server chooses)."""
    ggml = _ggml()
    ggml.ggml_backend_load_all()
    if names:
        found = [ggml.ggml_backend_dev_by_name(name.encode()) for name in names]
        unknown = [name for name, device in zip(names, found) if not device]
        if unknown:
            raise RpcError(f"This computer has no device named {', '.join(unknown)}: choose from "
                           f"{', '.join(device_names())}.")
        return found
    every = [ggml.ggml_backend_dev_get(i) for i in range(ggml.ggml_backend_dev_count())]
    accelerators = [d for d in every if ggml.ggml_backend_dev_type(d) not in
                    (GGML_BACKEND_DEVICE_TYPE_CPU, GGML_BACKEND_DEVICE_TYPE_ACCEL)]
    cpu = ggml.ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU)
    if not accelerators and not cpu:
        raise RpcError("llama.cpp's build has no device to serve over RPC.")
    return accelerators or [cpu]


def _cap_advertised_memory(device: int, limit_bytes: int) -> None:
    """Make the device report at most limit_bytes free and in total, to clients and in its start-up lines.

    The server answers a client's memory question with the device's own figure, so the cap goes in
    there. It is what this computer offers: llama.cpp on the client splits layers by it and the
    planner budgets with it; the server itself does not refuse a larger allocation.
    """
    slots = (ctypes.c_void_p * (_GET_MEMORY_SLOT + 1)).from_address(device)
    original = _GetMemory(slots[_GET_MEMORY_SLOT])

    def capped(dev, free, total):
        original(dev, free, total)
        free[0] = min(free[0], limit_bytes)
        total[0] = min(total[0], limit_bytes)

    callback = _GetMemory(capped)
    _memory_caps.append(callback)
    slots[_GET_MEMORY_SLOT] = ctypes.cast(callback, ctypes.c_void_p).value


def serve_forever(endpoint: str, *, threads: int = 1, log_path: str | None = None,
                  devices: Sequence[str] | None = ("CPU",), memory_limit_bytes: int | None = None) -> None:
    """Serve this machine's devices to RPC clients at endpoint; blocks until the process ends.

    Meant as a child-process target: the C loop cannot be interrupted from Python, so stop it by
    ending the process (LocalRpcServer.stop). Clients are served one at a time. devices are ggml
    device names (default: the CPU, a GPU-like device for tests); None or () serves every GPU, or
    the CPU where there is none. memory_limit_bytes caps what each device advertises. The server's
    own output goes to log_path when given (STDERR: this process's stderr), else to its stdout.
    """
    split_endpoint(endpoint)
    # Ctrl-C reaches the whole process group; the parent decides when this server ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if log_path is not None:
        _redirect_output(log_path)
    serving = serving_devices(devices or ())
    if memory_limit_bytes is not None:
        for device in serving:
            _cap_advertised_memory(device, memory_limit_bytes)
    array = (ctypes.c_void_p * len(serving))(*serving)
    _rpc_library().ggml_backend_rpc_start_server(endpoint.encode(), None, threads, len(serving), array)
    # It only returns when it could not start (bad endpoint, port taken, ...).
    raise RpcError(f"The RPC server could not listen on {endpoint} (is the port already in use?).")


@dataclass
class LocalRpcServer:
    """An RPC server in a child process of this one; a context manager that stops it on exit."""

    endpoint: str
    process: Any  # multiprocessing.Process
    log_path: Path | None = None

    def stop(self, timeout: float = 5.0) -> None:
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout)
            if self.process.is_alive():
                self.process.kill()
                self.process.join(timeout)

    def __enter__(self) -> "LocalRpcServer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def log_tail(self, limit: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:] if self.log_path else ""
        except OSError:
            return ""


def _wait_until_listening(server: LocalRpcServer, ready_timeout: float) -> None:
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if not server.process.is_alive():
            raise RpcError(f"The RPC server for {server.endpoint} stopped at start (exit code "
                           f"{server.process.exitcode}). {server.log_tail()}".strip())
        if is_listening(_reachable(server.endpoint), timeout=0.5):
            return
        time.sleep(0.05)
    server.stop()
    raise RpcError(f"The RPC server for {server.endpoint} did not accept connections within "
                   f"{ready_timeout:.0f} s. {server.log_tail()}".strip())


def start_local_server(port: int | None = None, *, threads: int = 1, ready_timeout: float = 20.0,
                       log_path: Path | str | None = None, host: str = LOOPBACK,
                       devices: Sequence[str] | None = ("CPU",),
                       memory_limit_bytes: int | None = None) -> LocalRpcServer:
    """Start an RPC server in a spawned child process; returns once it accepts connections.

    It listens on 127.0.0.1 unless told another host (an IPv4 address: ggml binds nothing else).
    devices and memory_limit_bytes: as serve_forever.
    """
    endpoint = f"{host}:{port or free_port(host if host != '0.0.0.0' else LOOPBACK)}"
    if is_listening(_reachable(endpoint), timeout=0.5):
        raise RpcError(f"Something already listens on {endpoint}: choose another port.")
    context = multiprocessing.get_context("spawn")
    process = context.Process(target=serve_forever, args=(endpoint,), name=f"llamadesk-rpc-{endpoint}",
                              kwargs={"threads": threads, "log_path": str(log_path) if log_path else None,
                                      "devices": tuple(devices) if devices else None,
                                      "memory_limit_bytes": memory_limit_bytes},
                              daemon=True)
    process.start()
    log_file = Path(log_path) if log_path and str(log_path) != STDERR else None
    server = LocalRpcServer(endpoint=endpoint, process=process, log_path=log_file)
    _wait_until_listening(server, ready_timeout)
    log.info("RPC server listening on %s (pid %s)", endpoint, process.pid)
    return server


# ---------------------------------------------------------------------------------------------
# Client side

def _register(endpoint: str) -> list[str]:
    ggml = _ggml()
    reg = _rpc_library().ggml_backend_rpc_add_server(endpoint.encode())
    if not reg:
        raise RpcError(f"The RPC server at {endpoint} offers no device.")
    ggml.ggml_backend_register(reg)
    count = ggml.ggml_backend_reg_dev_count(reg)
    return [_decode(ggml.ggml_backend_dev_name(ggml.ggml_backend_reg_dev_get(reg, i))) for i in range(count)]


def _decode(value: bytes | None) -> str:
    return value.decode(errors="replace") if value else ""


def attach_servers(endpoints: Sequence[str]) -> list[str]:
    """Make llama.cpp in this process use these RPC servers; call before loading a model.

    Returns the llama.cpp device names ("RPC0", "RPC1", ...) in endpoint order. Attaching an
    endpoint twice is harmless: it returns the same names.
    """
    names: list[str] = []
    with _attach_lock:
        for endpoint in endpoints:
            if endpoint not in _attached:
                split_endpoint(endpoint)
                if not is_listening(endpoint):
                    raise RpcError(f"No RPC server answers at {endpoint}: start one there first "
                                   "(llama.cpp's rpc-server, or LlamaDesk's local server).")
                _attached[endpoint] = _register(endpoint)
                log.info("attached RPC server %s as %s", endpoint, ", ".join(_attached[endpoint]))
            names.extend(_attached[endpoint])
    return names


def buffer_name(endpoint: str, device: int = 0) -> str:
    """How llama.cpp's log names buffers on a server's device, e.g. 'RPC0[127.0.0.1:50052]'."""
    return f"RPC{device}[{endpoint}]"


def with_rpc_devices(snapshot: hardware.HardwareSnapshot, endpoints: Sequence[str], *,
                     budget_bytes: int) -> hardware.HardwareSnapshot:
    """The snapshot plus one GPU-like device per endpoint, as llama.cpp will list them.

    A server's own "free memory" is its host's RAM, so the budget for each is given explicitly
    (ARCHITECTURE §4). Devices are named as llama.cpp's log names their buffers.
    """
    first = len(snapshot.gpus)
    extra = tuple(hardware.GpuInfo(index=first + i, name=buffer_name(endpoint), vendor="rpc",
                                   total_bytes=budget_bytes, free_bytes=budget_bytes, used_bytes=0,
                                   kind="worker", address=endpoint)
                  for i, endpoint in enumerate(endpoints))
    backends = snapshot.backends if "RPC" in snapshot.backends else (*snapshot.backends, "RPC")
    return replace(snapshot, gpus=snapshot.gpus + extra, backends=backends)
