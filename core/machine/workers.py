"""Workers: other computers lending their memory and compute to this one through llama.cpp's RPC backend.

A worker is a llama.cpp RPC server (`llamadesk-cli worker`, or llama.cpp's own rpc-server) at
host:port. probe_worker() asks it, the way llama.cpp's client does, for its protocol version, its
devices and each device's free and total memory, and times the link; with_workers() adds its
devices to a HardwareSnapshot as devices of kind "worker", which the planner and a load treat as
one more GPU each (llama.cpp names them RPC0, RPC1, ... after this computer's own GPUs).

Why our own few lines of the wire protocol instead of libggml-rpc's exported client
(ggml_backend_rpc_add_server, ggml_backend_rpc_get_device_memory): that client keeps its
connection to each server open for the life of the process, and a server serves one client at
a time, so a process that only asked would lock the engine out; and any error in it (a refused
connection, a server that stops mid-reply, another protocol version) aborts the whole process.
Here a question is one short connection that is closed at once, and every failure is a
WorkerError with a sentence. The format (ggml/src/ggml-rpc/ggml-rpc.cpp): a request is a command
byte, a little-endian u64 size and that many bytes; a reply is a u64 size and its bytes; the first
command on a connection must be HELLO, answered with the server's major.minor.patch version.

What the link timing measures, and why: the round trip is the median of a few tiny requests
(GET_ALIGNMENT: a 4-byte question, an 8-byte answer) on the open connection; each generated token
crosses each worker about twice, so this bounds generation speed. The bandwidth is one timed
transfer of LINK_SAMPLE_BYTES each way into a buffer allocated on the worker and freed again
(SET_TENSOR up, GET_TENSOR down, each closed by a round trip so the time counts the bytes
arriving), less one round trip; the slower direction is reported. It bounds how fast a model's
weights load onto the worker and how fast a long prompt's activations cross.
"""
from __future__ import annotations

import logging
import socket
import statistics
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Sequence

from core.machine import hardware
from core.machine.rpc import RpcError, buffer_name, is_listening, split_endpoint

log = logging.getLogger(__name__)

# The RPC protocol of the llama.cpp that llama-cpp-python 0.3.36 bundles (RPC_PROTO_*_VERSION in
# ggml/include/ggml-rpc.h); tests/unit/test_workers.py checks it against a server of this build.
PROTOCOL_VERSION = (7, 0, 0)
ANSWER_TIMEOUT_S = 3.0
LINK_SAMPLE_BYTES = 4 * 2**20
ROUND_TRIPS = 5
WORKER_COMMAND = "llamadesk-cli worker"

# Command numbers (enum rpc_cmd) and fixed sizes of the messages used here.
_ALLOC_BUFFER, _GET_ALIGNMENT, _BUFFER_GET_BASE, _FREE_BUFFER = 0, 1, 3, 4
_SET_TENSOR, _GET_TENSOR, _GET_DEVICE_MEMORY, _HELLO, _DEVICE_COUNT = 6, 8, 11, 14, 15
_CONN_CAPS_SIZE = 24
_HELLO_REPLY_SIZE = 4 + _CONN_CAPS_SIZE
_GGML_TYPE_I8 = 24
_MAX_DIMS, _MAX_OP_PARAMS, _MAX_SRC, _MAX_NAME = 4, 64, 10, 64
# struct rpc_tensor, packed: id, type, buffer, ne[4], nb[4], op, op_params, flags, src[10], view_src,
# view_offs, data, name, use_count.
_TENSOR = struct.Struct(f"<QIQ{_MAX_DIMS}I{_MAX_DIMS}II{_MAX_OP_PARAMS // 4}ii{_MAX_SRC}QQQQ{_MAX_NAME}si")


class WorkerError(RuntimeError):
    """A worker that cannot be used; the message is a sentence for the user naming its address."""

    def __init__(self, address: str, message: str) -> None:
        super().__init__(message)
        self.address = address


class WorkerUnreachable(WorkerError):
    """Nothing answers at the address (refused, timed out, or the connection dropped)."""


class _NoAnswer(WorkerUnreachable):
    """Connected, but no reply within the timeout."""


class WorkerBusy(WorkerError):
    """It accepts connections but does not answer: it is serving another client (one at a time)."""


class WorkerVersionMismatch(WorkerError):
    """It speaks another version of the RPC protocol than this LlamaDesk's llama.cpp."""


@dataclass(frozen=True)
class WorkerDevice:
    index: int  # the device's number on its server
    free_bytes: int
    total_bytes: int


@dataclass(frozen=True)
class WorkerLink:
    round_trip_s: float
    upload_bytes_per_s: float | None  # None when the worker could not hold the sample buffer
    download_bytes_per_s: float | None

    @property
    def bandwidth_bytes_per_s(self) -> float | None:
        """The slower direction: what a transfer both ways can count on."""
        rates = [r for r in (self.upload_bytes_per_s, self.download_bytes_per_s) if r]
        return min(rates) if rates else None


@dataclass(frozen=True)
class Worker:
    address: str  # host:port
    version: tuple[int, int, int]
    devices: tuple[WorkerDevice, ...]
    link: WorkerLink | None  # None when not measured

    @property
    def free_bytes(self) -> int:
        return sum(device.free_bytes for device in self.devices)


# ---------------------------------------------------------------------------------------------
# One connection speaking the wire protocol

class _Connection:
    """A connection to one RPC server that has passed HELLO; closed by the context manager."""

    def __init__(self, address: str, timeout: float) -> None:
        self.address = address
        self.timeout = timeout
        host, port = _split(address)
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        except socket.timeout:
            raise WorkerUnreachable(address, f"{address} did not answer within {timeout:g} s: is "
                                             f"`{WORKER_COMMAND}` running there?") from None
        except OSError as error:
            raise WorkerUnreachable(address, f"{address} could not be reached ({_reason(error)}): is "
                                             f"`{WORKER_COMMAND}` running there?") from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def __enter__(self) -> "_Connection":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.sock.close()

    def send(self, command: int, payload: bytes = b"") -> None:
        self._io(self.sock.sendall, struct.pack("<BQ", command, len(payload)))
        if payload:
            self._io(self.sock.sendall, payload)

    def receive(self, size: int | None = None) -> bytes:
        (length,) = struct.unpack("<Q", self._read(8))
        if size is not None and length != size:
            raise WorkerError(self.address, f"{self.address} answered with {length} bytes where {size} were "
                                            "expected: it is not a llama.cpp RPC server of a matching version.")
        return self._read(length)

    def ask(self, command: int, payload: bytes, size: int) -> bytes:
        self.send(command, payload)
        return self.receive(size)

    def _read(self, size: int) -> bytes:
        chunks, left = [], size
        while left:
            chunk = self._io(self.sock.recv, min(left, 1 << 20))
            if not chunk:
                raise WorkerUnreachable(self.address, f"{self.address} closed the connection mid-reply: did "
                                                      f"`{WORKER_COMMAND}` stop there?")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _io(self, call, argument):
        try:
            return call(argument)
        except socket.timeout:
            raise _NoAnswer(self.address, f"{self.address} did not answer within {self.timeout:g} s: "
                                          f"is `{WORKER_COMMAND}` running there?") from None
        except OSError as error:
            raise WorkerUnreachable(self.address, f"{self.address} dropped the connection "
                                                  f"({_reason(error)}): did `{WORKER_COMMAND}` stop there?") from None


def _split(address: str) -> tuple[str, int]:
    try:
        return split_endpoint(address)
    except RpcError as error:
        raise WorkerError(address, str(error)) from None


def _reason(error: OSError) -> str:
    return (error.strerror or str(error) or type(error).__name__).lower()


def _hello(connection: _Connection) -> tuple[int, int, int]:
    """The server's protocol version; raises WorkerBusy or WorkerVersionMismatch with a sentence."""
    address = connection.address
    try:
        reply = connection.ask(_HELLO, bytes(_CONN_CAPS_SIZE), _HELLO_REPLY_SIZE)
    except _NoAnswer:
        raise WorkerBusy(address, f"{address} accepted the connection but did not answer within "
                                  f"{connection.timeout:g} s: a worker serves one computer at a time, so "
                                  "another LlamaDesk (or llama.cpp) may be using it now.") from None
    except WorkerUnreachable:
        raise WorkerVersionMismatch(address, f"{address} closed the connection at the handshake: it may run "
                                             "a llama.cpp whose RPC protocol differs from this LlamaDesk's "
                                             f"{_version_text(PROTOCOL_VERSION)}.") from None
    version = (reply[0], reply[1], reply[2])
    ours = PROTOCOL_VERSION
    if version[0] != ours[0] or version[1] > ours[1]:
        raise WorkerVersionMismatch(address, f"{address} speaks RPC protocol {_version_text(version)}, but this "
                                             f"LlamaDesk's llama.cpp speaks {_version_text(ours)}: run the same "
                                             "llama.cpp version on both computers.")
    return version


def _version_text(version: tuple[int, int, int]) -> str:
    return ".".join(str(part) for part in version)


def _devices(connection: _Connection) -> tuple[WorkerDevice, ...]:
    (count,) = struct.unpack("<I", connection.ask(_DEVICE_COUNT, b"", 4))
    devices = []
    for index in range(count):
        free, total = struct.unpack("<QQ", connection.ask(_GET_DEVICE_MEMORY, struct.pack("<I", index), 16))
        devices.append(WorkerDevice(index, free, total))
    return tuple(devices)


# ---------------------------------------------------------------------------------------------
# Link timing

def _round_trip(connection: _Connection) -> float:
    start = time.perf_counter()
    connection.ask(_GET_ALIGNMENT, struct.pack("<I", 0), 8)
    return time.perf_counter() - start


def _sample_tensor(buffer: int, base: int, size: int) -> bytes:
    """An int8 tensor covering the first size bytes of a remote buffer."""
    return _TENSOR.pack(1, _GGML_TYPE_I8, buffer, size, 1, 1, 1, 1, size, size, size, 0,
                        *([0] * (_MAX_OP_PARAMS // 4)), 0, *([0] * _MAX_SRC), 0, 0, base, b"link", 0)


def _link(connection: _Connection, size: int) -> WorkerLink:
    round_trip = statistics.median(_round_trip(connection) for _ in range(ROUND_TRIPS))
    buffer, held = struct.unpack("<QQ", connection.ask(_ALLOC_BUFFER, struct.pack("<IQ", 0, size), 16))
    if not buffer or held < size:
        log.info("%s could not hold a %d-byte sample buffer; link bandwidth not measured", connection.address, size)
        return WorkerLink(round_trip, None, None)
    try:
        (base,) = struct.unpack("<Q", connection.ask(_BUFFER_GET_BASE, struct.pack("<Q", buffer), 8))
        tensor = _sample_tensor(buffer, base, size)
        upload_message = tensor + struct.pack("<BQ", 0, 0) + bytes(size)
        start = time.perf_counter()
        connection.send(_SET_TENSOR, upload_message)
        connection.ask(_GET_ALIGNMENT, struct.pack("<I", 0), 8)  # answered once the bytes have arrived
        upload = time.perf_counter() - start
        start = time.perf_counter()
        connection.ask(_GET_TENSOR, tensor + struct.pack("<QQ", 0, size), size)
        download = time.perf_counter() - start
    finally:
        connection.send(_FREE_BUFFER, struct.pack("<Q", buffer))
    return WorkerLink(round_trip, _rate(size, upload - round_trip), _rate(size, download - round_trip))


def _rate(size: int, seconds: float) -> float:
    return size / max(seconds, 1e-6)


# ---------------------------------------------------------------------------------------------
# Probing

def probe_worker(address: str, *, timeout: float = ANSWER_TIMEOUT_S, measure_link: bool = True,
                 link_sample_bytes: int = LINK_SAMPLE_BYTES) -> Worker:
    """Ask the worker at host:port for its protocol version, devices and memory, and time the link.

    Raises WorkerError (WorkerUnreachable, WorkerBusy, WorkerVersionMismatch) with a sentence.
    One short connection, closed before returning, so the worker is free for the engine at once.
    """
    with _Connection(address, timeout) as connection:
        version = _hello(connection)
        devices = _devices(connection)
        if not devices:
            raise WorkerError(address, f"{address} offers no device to compute on.")
        link = _link(connection, link_sample_bytes) if measure_link else None
    log.info("worker %s: protocol %s, %d device(s), %d bytes free", address, _version_text(version),
             len(devices), sum(d.free_bytes for d in devices))
    return Worker(address, version, devices, link)


def probe_workers(addresses: Sequence[str], *, timeout: float = ANSWER_TIMEOUT_S,
                  measure_link: bool = True) -> tuple[Worker, ...]:
    """Every worker, asked side by side; the first that cannot be used raises its WorkerError."""
    unique = list(dict.fromkeys(addresses))
    if not unique:
        return ()
    with ThreadPoolExecutor(max_workers=len(unique)) as pool:
        futures = [pool.submit(probe_worker, address, timeout=timeout, measure_link=measure_link)
                   for address in unique]
        return tuple(future.result() for future in futures)


def lost_workers(addresses: Sequence[str], *, timeout: float = 1.0) -> list[str]:
    """The addresses where nothing accepts connections any more (after an engine lost a worker)."""
    return [address for address in addresses if not is_listening(address, timeout=timeout)]


def lost_workers_sentence(addresses: Sequence[str]) -> str:
    """'The worker at 10.0.0.5:50052 stopped answering.' or '' when every worker still listens."""
    lost = lost_workers(addresses)
    if not lost:
        return ""
    if len(lost) == 1:
        return f"The worker at {lost[0]} stopped answering."
    return f"The workers at {', '.join(lost)} stopped answering."


# ---------------------------------------------------------------------------------------------
# The machine with its workers

def worker_gpus(workers: Sequence[Worker], first_index: int = 0) -> tuple[hardware.GpuInfo, ...]:
    """One device of kind "worker" per device the workers offer, named as llama.cpp's log names them."""
    gpus = []
    for worker in workers:
        link = worker.link
        for device in worker.devices:
            gpus.append(hardware.GpuInfo(
                index=first_index + len(gpus), name=buffer_name(worker.address, device.index), vendor="rpc",
                total_bytes=max(device.total_bytes, 1), free_bytes=min(device.free_bytes, device.total_bytes),
                used_bytes=max(device.total_bytes - device.free_bytes, 0), kind="worker", address=worker.address,
                link_bandwidth_bytes_per_s=link.bandwidth_bytes_per_s if link else None,
                link_round_trip_s=link.round_trip_s if link else None))
    return tuple(gpus)


def with_workers(snapshot: hardware.HardwareSnapshot, workers: Sequence[Worker]) -> hardware.HardwareSnapshot:
    """The snapshot plus the workers' devices after its own GPUs (llama.cpp's order: RPC devices last).

    A probed snapshot keeps the build's backends, so a build without RPC warns that the workers go
    unused; a profile (a machine being imagined) gains the RPC backend.
    """
    if not workers:
        return snapshot
    extra = worker_gpus(workers, first_index=max((gpu.index for gpu in snapshot.gpus), default=-1) + 1)
    backends = snapshot.backends
    if snapshot.source != "probe" and "RPC" not in backends:
        backends = (*backends, "RPC")
    warnings = tuple(dict.fromkeys((*snapshot.warnings, *hardware.build_warnings(extra, backends))))
    return replace(snapshot, gpus=snapshot.gpus + extra, backends=backends, warnings=warnings)


def addresses_of(snapshot: hardware.HardwareSnapshot) -> tuple[str, ...]:
    """The workers' addresses in a snapshot, in order, each once: what LoadSettings.rpc_servers takes."""
    return tuple(dict.fromkeys(gpu.address for gpu in snapshot.gpus if gpu.is_worker and gpu.address))
