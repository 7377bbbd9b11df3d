"""What this machine offers a model: host RAM and CPU, GPUs and their memory, the llama.cpp build.

A HardwareSnapshot is a plain value: probe() fills it from this machine, load_profile() from a JSON
file, so the planner can answer for any machine (resources/hardware/*.json ship a few).

Sources: psutil for the host; NVML for NVIDIA GPUs; sysfs for AMD GPUs on Linux; sysctl for Apple
Silicon, whose GPU shares the host RAM up to Metal's working-set limit; ctypes on the installed
llama_cpp's own ggml library for the backends the build can use.
"""
from __future__ import annotations

import ctypes
import functools
import importlib.util
import json
import logging
import platform
import sys
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterable

import psutil

from core.machine import bandwidth
from core.machine.cpu import cpu_name, sysctl
from core.platform import locations

log = logging.getLogger(__name__)

VENDORS = ("nvidia", "amd", "apple", "rpc", "other")
DEVICE_KINDS = ("gpu", "worker")  # a GPU in this computer, or a device another computer lends over RPC
# Fields only a worker's device has; a local GPU's JSON leaves them out, so profiles read and write as before.
WORKER_FIELDS = ("kind", "address", "link_bandwidth_bytes_per_s", "link_round_trip_s")
SNAPSHOT_FORMAT = 1
PROFILES_FOLDER = "hardware"
SYSFS_DRM = Path("/sys/class/drm")
AMD_PCI_VENDOR = "0x1002"
# ggml backend registry names that drive each GPU vendor (ggml-cuda.h, ggml-metal.cpp, ggml-vulkan.h).
USABLE_BACKENDS = {
    "nvidia": ("CUDA", "Vulkan"),
    "amd": ("ROCm", "Vulkan"),
    "apple": ("MTL",),
    "rpc": ("RPC",),
}
# The tools/dev.py backend that makes each vendor's GPU usable.
SETUP_BACKEND = {"nvidia": "cuda", "amd": "vulkan", "apple": "metal"}


class HardwareError(ValueError):
    """A hardware snapshot or profile that cannot be used; the message is a sentence for the user."""


# ---------------------------------------------------------------------------------------------
# Values

@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    vendor: str  # one of VENDORS
    total_bytes: int
    free_bytes: int
    used_bytes: int
    unified_memory: bool = False  # Apple: shares host RAM; total is Metal's working-set limit
    bandwidth_bytes_per_s: float | None = None  # peak, from core.machine.bandwidth's table when the name is known
    app_used_bytes: int | None = None  # used by LlamaDesk's processes (NVML per process) when known
    kind: str = "gpu"  # one of DEVICE_KINDS
    address: str | None = None  # a worker's host:port
    link_bandwidth_bytes_per_s: float | None = None  # a worker's measured link (core.machine.workers)
    link_round_trip_s: float | None = None

    @property
    def is_worker(self) -> bool:
        return self.kind == "worker"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if not self.is_worker:
            for name in WORKER_FIELDS:
                del data[name]
        return data


@dataclass(frozen=True)
class HostInfo:
    os: str  # platform.system(): "Linux", "Darwin", "Windows"
    cpu_name: str
    physical_cores: int
    logical_cores: int
    ram_total_bytes: int
    ram_available_bytes: int
    memory_bandwidth_bytes_per_s: float | None = None


@dataclass(frozen=True)
class HardwareSnapshot:
    host: HostInfo
    gpus: tuple[GpuInfo, ...]
    backends: tuple[str, ...]  # ggml backends of the installed llama.cpp build, e.g. ("RPC", "CPU")
    warnings: tuple[str, ...]  # sentences for the user, e.g. a GPU the build cannot use
    source: str = "probe"  # "probe", or the profile's name

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": SNAPSHOT_FORMAT,
            "source": self.source,
            "host": asdict(self.host),
            "gpus": [gpu.to_dict() for gpu in self.gpus],
            "backends": list(self.backends),
            "warnings": list(self.warnings),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: Any) -> "HardwareSnapshot":
        return _snapshot_from_dict(data)

    @classmethod
    def from_json(cls, text: str) -> "HardwareSnapshot":
        try:
            data = json.loads(text)
        except ValueError as error:
            raise HardwareError(f"The hardware snapshot is not valid JSON ({error}).") from None
        return _snapshot_from_dict(data)


# ---------------------------------------------------------------------------------------------
# Strict JSON reading: every field checked, every problem named in a sentence.

_MISSING = object()


class _Reader:
    """Reads one JSON object's fields, naming the object (`where`) in every error."""

    def __init__(self, data: Any, where: str, known: Iterable[str]):
        if not isinstance(data, dict):
            raise HardwareError(f"The hardware snapshot's {where} must be a JSON object, not {_kind(data)}.")
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise HardwareError(f"The hardware snapshot's {where} has unknown field(s): {', '.join(unknown)}.")
        self.data = data
        self.where = where

    def _get(self, key: str, default: Any) -> Any:
        if key in self.data:
            return self.data[key]
        if default is _MISSING:
            raise HardwareError(f"The hardware snapshot's {self.where} lacks the field '{key}'.")
        return default

    def required(self, key: str) -> Any:
        return self._get(key, _MISSING)

    def _fail(self, key: str, wanted: str, value: Any) -> HardwareError:
        return HardwareError(f"The hardware snapshot's {self.where}.{key} must be {wanted}, not {value!r}.")

    def whole(self, key: str, *, minimum: int = 0, default: Any = _MISSING) -> int:
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(key, "a whole number", value)
        if value < minimum:
            raise self._fail(key, f"at least {minimum}", value)
        return value

    def optional_whole(self, key: str) -> int | None:
        return None if self._get(key, None) is None else self.whole(key)

    def optional_text(self, key: str) -> str | None:
        return None if self._get(key, None) is None else self.text(key)

    def optional_seconds(self, key: str) -> float | None:
        value = self._get(key, None)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise self._fail(key, "a number of seconds, at least 0 (or null)", value)
        return float(value)

    def optional_rate(self, key: str) -> float | None:
        value = self._get(key, None)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise self._fail(key, "a positive number of bytes per second (or null)", value)
        return float(value)

    def text(self, key: str, *, choices: tuple[str, ...] = (), default: Any = _MISSING) -> str:
        value = self._get(key, default)
        if not isinstance(value, str) or not value.strip():
            raise self._fail(key, "a non-empty string", value)
        if choices and value not in choices:
            raise self._fail(key, f"one of {', '.join(choices)}", value)
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self._fail(key, "true or false", value)
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self._get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self._fail(key, "a list of strings", value)
        return tuple(value)

    def objects(self, key: str) -> list[Any]:
        value = self._get(key, [])
        if not isinstance(value, list):
            raise self._fail(key, "a list", value)
        return value


def _kind(value: Any) -> str:
    names = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "true/false"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _host_from_dict(data: Any) -> HostInfo:
    read = _Reader(data, "host", (f.name for f in HostInfo.__dataclass_fields__.values()))
    host = HostInfo(
        os=read.text("os"),
        cpu_name=read.text("cpu_name"),
        physical_cores=read.whole("physical_cores", minimum=1),
        logical_cores=read.whole("logical_cores", minimum=1),
        ram_total_bytes=read.whole("ram_total_bytes", minimum=1),
        ram_available_bytes=read.whole("ram_available_bytes"),
        memory_bandwidth_bytes_per_s=read.optional_rate("memory_bandwidth_bytes_per_s"),
    )
    if host.ram_available_bytes > host.ram_total_bytes:
        raise HardwareError(f"The hardware snapshot's host has more RAM available ({host.ram_available_bytes}) "
                            f"than in total ({host.ram_total_bytes}).")
    return host


def _gpu_from_dict(data: Any, position: int) -> GpuInfo:
    where = f"gpus[{position}]"
    read = _Reader(data, where, GpuInfo.__dataclass_fields__)
    gpu = GpuInfo(
        index=read.whole("index"),
        name=read.text("name"),
        vendor=read.text("vendor", choices=VENDORS),
        total_bytes=read.whole("total_bytes", minimum=1),
        free_bytes=read.whole("free_bytes"),
        used_bytes=read.whole("used_bytes"),
        unified_memory=read.flag("unified_memory", False),
        bandwidth_bytes_per_s=read.optional_rate("bandwidth_bytes_per_s"),
        app_used_bytes=read.optional_whole("app_used_bytes"),
        kind=read.text("kind", choices=DEVICE_KINDS, default="gpu"),
        address=read.optional_text("address"),
        link_bandwidth_bytes_per_s=read.optional_rate("link_bandwidth_bytes_per_s"),
        link_round_trip_s=read.optional_seconds("link_round_trip_s"),
    )
    if gpu.is_worker and gpu.address is None:
        raise HardwareError(f"The hardware snapshot's {where} ({gpu.name}) is a worker's device but lacks the "
                            "worker's 'address' (host:port).")
    if gpu.free_bytes > gpu.total_bytes:
        raise HardwareError(f"The hardware snapshot's {where} ({gpu.name}) has more memory free "
                            f"({gpu.free_bytes}) than in total ({gpu.total_bytes}).")
    return gpu


def _snapshot_from_dict(data: Any) -> HardwareSnapshot:
    read = _Reader(data, "top level", ("format", "source", "host", "gpus", "backends", "warnings"))
    version = read.whole("format", default=SNAPSHOT_FORMAT)
    if version != SNAPSHOT_FORMAT:
        raise HardwareError(f"The hardware snapshot has format {version}; this LlamaDesk reads format "
                            f"{SNAPSHOT_FORMAT}.")
    gpus = tuple(_gpu_from_dict(item, i) for i, item in enumerate(read.objects("gpus")))
    indexes = [gpu.index for gpu in gpus]
    if len(set(indexes)) != len(indexes):
        raise HardwareError(f"The hardware snapshot lists the same GPU index twice ({indexes}).")
    return HardwareSnapshot(
        host=_host_from_dict(read.required("host")),
        gpus=gpus,
        backends=read.strings("backends"),
        warnings=read.strings("warnings"),
        source=read.text("source", default="probe"),
    )


# ---------------------------------------------------------------------------------------------
# Host

def probe_host(*, measure_bandwidth: bool = False) -> HostInfo:
    memory = psutil.virtual_memory()
    logical = psutil.cpu_count(logical=True) or 1
    if measure_bandwidth:
        rate: float | None = bandwidth.host_bandwidth()
    else:
        rate = bandwidth.cached_host_bandwidth()
    return HostInfo(
        os=platform.system() or "unknown",
        cpu_name=cpu_name(),
        physical_cores=psutil.cpu_count(logical=False) or logical,
        logical_cores=logical,
        ram_total_bytes=memory.total,
        ram_available_bytes=memory.available,
        memory_bandwidth_bytes_per_s=rate,
    )


# ---------------------------------------------------------------------------------------------
# NVIDIA (NVML): initialised once per process, handles cached; failures remembered, never raised.

class _Nvml:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tried = False
        self._module: Any = None
        self._handles: list[Any] = []

    def handles(self) -> tuple[Any, list[Any]]:
        """(pynvml module, device handles); (None, []) when there is no NVIDIA driver."""
        with self._lock:
            if not self._tried:
                self._tried = True
                self._start()
            return self._module, self._handles

    def _start(self) -> None:
        try:
            import pynvml

            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            self._module = pynvml
        except Exception as error:  # ImportError, NVMLError_LibraryNotFound, DriverNotLoaded, ...
            log.info("no NVIDIA GPU via NVML: %s", error or type(error).__name__)
            self._handles = []


_NVML = _Nvml()


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def read_nvidia_gpus() -> tuple[GpuInfo, ...]:
    nvml, handles = _NVML.handles()
    gpus = []
    for index, handle in enumerate(handles):
        try:
            name = _text(nvml.nvmlDeviceGetName(handle))
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        except Exception as error:
            log.warning("NVML could not read GPU %d: %s", index, error)
            continue
        gpus.append(GpuInfo(index=index, name=name, vendor="nvidia", total_bytes=int(memory.total),
                            free_bytes=int(memory.free), used_bytes=int(memory.used),
                            bandwidth_bytes_per_s=bandwidth.gpu_bandwidth(name)))
    return tuple(gpus)


def process_gpu_bytes(pids: Iterable[int]) -> dict[int, int]:
    """Bytes of GPU memory used by these processes, per NVIDIA GPU index; {} when unknown."""
    wanted = set(pids)
    nvml, handles = _NVML.handles()
    usage: dict[int, int] = {}
    for index, handle in enumerate(handles):
        try:
            processes = [*nvml.nvmlDeviceGetComputeRunningProcesses(handle),
                         *nvml.nvmlDeviceGetGraphicsRunningProcesses(handle)]
        except Exception as error:
            log.debug("NVML could not list processes on GPU %d: %s", index, error)
            continue
        ours = [p for p in processes if p.pid in wanted]
        # A process using both compute and graphics is listed twice with the same figure; under
        # Windows' WDDM the figure is unknown (None), and then so is the total.
        known = {p.pid: p.usedGpuMemory for p in ours if p.usedGpuMemory is not None}
        if ours and not known:
            continue
        usage[index] = int(sum(known.values()))
    return usage


# ---------------------------------------------------------------------------------------------
# AMD on Linux (amdgpu sysfs)

def _read_sysfs(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def read_amd_gpus(drm_root: Path = SYSFS_DRM) -> tuple[GpuInfo, ...]:
    """AMD GPUs from `<drm_root>/card*/device/mem_info_vram_{total,used}`; () where there is none."""
    try:
        cards = sorted((p for p in drm_root.glob("card*") if p.name[4:].isdigit()), key=lambda p: int(p.name[4:]))
    except OSError:
        return ()
    gpus = []
    for card in cards:  # card0, card1, ...; connectors such as card1-DP-1 are left out
        device = card / "device"
        vendor = _read_sysfs(device / "vendor")
        total, used = _read_sysfs(device / "mem_info_vram_total"), _read_sysfs(device / "mem_info_vram_used")
        if vendor != AMD_PCI_VENDOR or not total or not used or not total.isdigit() or not used.isdigit():
            continue
        name = _read_sysfs(device / "product_name") or f"AMD GPU ({card.name})"
        total_bytes, used_bytes = int(total), min(int(used), int(total))
        gpus.append(GpuInfo(index=len(gpus), name=name, vendor="amd", total_bytes=total_bytes,
                            free_bytes=total_bytes - used_bytes, used_bytes=used_bytes,
                            bandwidth_bytes_per_s=bandwidth.gpu_bandwidth(name)))
    return tuple(gpus)


# ---------------------------------------------------------------------------------------------
# Apple Silicon: one GPU sharing the host RAM, capped by Metal's working-set limit

def is_apple_silicon() -> bool:
    return sys.platform == "darwin" and platform.machine() == "arm64"


def default_metal_working_set(ram_total_bytes: int) -> int:
    """Metal's default recommendedMaxWorkingSetSize (what llama.cpp takes as the GPU's total).

    Apple does not document the rule; reports of what Metal returns agree on about 2/3 of RAM up
    to 36 GB (32 GB -> 21845 MiB) and about 3/4 above (64 GB -> 49152 MiB). Recent macOS versions
    have been seen granting more on 128 GB machines (~107.5 GiB), so this errs on the safe side.
    """
    share = (2, 3) if ram_total_bytes <= 36 * 2**30 else (3, 4)
    return ram_total_bytes * share[0] // share[1]


def metal_working_set(ram_total_bytes: int, wired_limit_mb: int | None) -> int:
    """The user's `sysctl iogpu.wired_limit_mb` when set (non-zero), else Metal's default share."""
    if wired_limit_mb:
        return min(wired_limit_mb * 2**20, ram_total_bytes)
    return default_metal_working_set(ram_total_bytes)


def apple_gpu(ram_total_bytes: int, ram_available_bytes: int, wired_limit_mb: int | None,
              chip_name: str) -> GpuInfo:
    """Free GPU memory is the smaller of the working-set limit and the host RAM still available."""
    total = metal_working_set(ram_total_bytes, wired_limit_mb)
    free = min(total, ram_available_bytes)
    return GpuInfo(index=0, name=chip_name, vendor="apple", total_bytes=total, free_bytes=free,
                   used_bytes=total - free, unified_memory=True,
                   bandwidth_bytes_per_s=bandwidth.gpu_bandwidth(chip_name))


@functools.lru_cache(maxsize=1)
def _wired_limit_mb() -> int | None:
    """`sysctl iogpu.wired_limit_mb` (read once per process: it changes only by hand, as root)."""
    value = sysctl("iogpu.wired_limit_mb")
    return int(value) if value and value.isdigit() else None


def read_apple_gpus() -> tuple[GpuInfo, ...]:
    if not is_apple_silicon():
        return ()
    memory = psutil.virtual_memory()
    return (apple_gpu(memory.total, memory.available, _wired_limit_mb(), cpu_name()),)


def read_gpu_memory() -> tuple[GpuInfo, ...]:
    """Every GPU with its memory now; cheap enough to call every second. Never raises.

    One vendor per machine, the first found: NVIDIA (indexes as NVML numbers them), else AMD, else
    Apple. So a laptop's AMD integrated GPU does not appear beside its NVIDIA one.
    """
    try:
        return read_nvidia_gpus() or read_amd_gpus() or read_apple_gpus()
    except Exception:  # a monitor must keep sampling whatever a driver does
        log.exception("reading GPU memory failed")
        return ()


def _with_app_use(gpus: tuple[GpuInfo, ...]) -> tuple[GpuInfo, ...]:
    """Fill app_used_bytes with what this process and its children (the engine) hold, when known."""
    if not any(gpu.vendor == "nvidia" for gpu in gpus):
        return gpus
    me = psutil.Process()
    pids = [me.pid, *(child.pid for child in me.children(recursive=True))]
    usage = process_gpu_bytes(pids)
    return tuple(replace(gpu, app_used_bytes=usage.get(gpu.index)) if gpu.vendor == "nvidia" else gpu
                 for gpu in gpus)


# ---------------------------------------------------------------------------------------------
# The installed llama.cpp build

def llama_cpp_lib_dir() -> Path:
    """`llama_cpp/lib` of the installed llama-cpp-python, found without importing it."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        raise HardwareError("llama-cpp-python is not installed: run `python3 tools/dev.py setup`.")
    return Path(next(iter(spec.submodule_search_locations))) / "lib"


def _library_file_names(base: str) -> tuple[str, ...]:
    """File names that carry the library's soname first: the copy libllama itself links to."""
    if sys.platform == "darwin":
        return (f"lib{base}.0.dylib", f"lib{base}.dylib")
    if sys.platform == "win32":
        return (f"{base}.dll", f"lib{base}.dll")
    return (f"lib{base}.so.0", f"lib{base}.so")


@functools.lru_cache(maxsize=None)
def build_library(base: str) -> ctypes.CDLL:
    """One of llama_cpp's bundled libraries ("ggml", "ggml-rpc", ...) loaded through ctypes.

    On Linux this must be the soname file (libggml.so.0): libllama.so links to that one, so both
    share one ggml backend registry. Loading libggml.so instead maps a second copy of ggml whose
    registry llama.cpp never sees (ARCHITECTURE §4).
    """
    folder = llama_cpp_lib_dir()
    for name in _library_file_names(base):
        path = folder / name
        if path.exists():
            return ctypes.CDLL(str(path), mode=getattr(ctypes, "RTLD_GLOBAL", 0))
    raise HardwareError(f"The llama.cpp library '{base}' is missing from {folder}: reinstall with "
                        "`python3 tools/dev.py setup`.")


@functools.lru_cache(maxsize=1)
def ggml_library() -> ctypes.CDLL:
    """libggml with the backend-registry functions' C signatures declared (ggml-backend.h)."""
    lib = build_library("ggml")
    lib.ggml_backend_load_all.argtypes = []
    lib.ggml_backend_load_all.restype = None
    lib.ggml_backend_reg_count.argtypes = []
    lib.ggml_backend_reg_count.restype = ctypes.c_size_t
    lib.ggml_backend_reg_get.argtypes = [ctypes.c_size_t]
    lib.ggml_backend_reg_get.restype = ctypes.c_void_p
    lib.ggml_backend_reg_name.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_reg_name.restype = ctypes.c_char_p
    lib.ggml_backend_reg_dev_count.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_reg_dev_count.restype = ctypes.c_size_t
    lib.ggml_backend_reg_dev_get.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    lib.ggml_backend_reg_dev_get.restype = ctypes.c_void_p
    lib.ggml_backend_register.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_register.restype = None
    lib.ggml_backend_dev_by_type.argtypes = [ctypes.c_int]
    lib.ggml_backend_dev_by_type.restype = ctypes.c_void_p
    lib.ggml_backend_dev_by_name.argtypes = [ctypes.c_char_p]
    lib.ggml_backend_dev_by_name.restype = ctypes.c_void_p
    lib.ggml_backend_dev_name.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_dev_name.restype = ctypes.c_char_p
    lib.ggml_backend_dev_description.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_dev_description.restype = ctypes.c_char_p
    lib.ggml_backend_dev_count.argtypes = []
    lib.ggml_backend_dev_count.restype = ctypes.c_size_t
    lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
    lib.ggml_backend_dev_get.restype = ctypes.c_void_p
    lib.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_dev_type.restype = ctypes.c_int
    return lib


def supports_gpu_offload() -> bool:
    """llama.cpp's own answer: a GPU, an integrated GPU or the RPC backend is usable."""
    try:
        import llama_cpp

        return bool(llama_cpp.llama_supports_gpu_offload())
    except Exception as error:
        log.warning("llama_supports_gpu_offload failed: %s", error)
        return False


@functools.lru_cache(maxsize=1)
def build_backends() -> tuple[str, ...]:
    """Names of the ggml backends the installed llama.cpp registers, e.g. ("RPC", "CPU").

    () when llama-cpp-python cannot be loaded. If its ggml library cannot be read through ctypes,
    falls back to llama_supports_gpu_offload(): ("CPU",) or ("CPU", "GPU").
    """
    try:
        lib = ggml_library()
        lib.ggml_backend_load_all()
        names = [lib.ggml_backend_reg_name(lib.ggml_backend_reg_get(i)) for i in range(lib.ggml_backend_reg_count())]
        return tuple(dict.fromkeys(_text(name) for name in names if name))
    except (HardwareError, OSError, AttributeError) as error:
        log.warning("could not list llama.cpp's ggml backends: %s", error)
    if importlib.util.find_spec("llama_cpp") is None:
        return ()
    return ("CPU", "GPU") if supports_gpu_offload() else ("CPU",)


# ---------------------------------------------------------------------------------------------
# Warnings

def reinstall_command(setup_backend: str) -> str:
    """The set-up command that rebuilds llama.cpp for a backend (tools/dev.py), in this OS's shell."""
    if sys.platform == "win32":
        return f'$env:LLAMADESK_BACKEND="{setup_backend}"; python tools\\dev.py setup'
    return f"LLAMADESK_BACKEND={setup_backend} python3 tools/dev.py setup"


def _unused_gpu_warning(gpu: GpuInfo, backends: tuple[str, ...]) -> str | None:
    usable = USABLE_BACKENDS.get(gpu.vendor, ())
    if not usable or "GPU" in backends or any(name in backends for name in usable):
        return None
    setup_backend = SETUP_BACKEND.get(gpu.vendor)
    if setup_backend is None:  # an RPC device: every LlamaDesk set-up builds with -DGGML_RPC=on
        fix = "Rebuild it with: python3 tools/dev.py setup"
    else:
        fix = f"Rebuild it for {setup_backend.upper()} with: {reinstall_command(setup_backend)}"
    return (f"GPU NOT USED: this machine has {gpu.name}, but the installed llama.cpp build only has "
            f"{', '.join(backends)}, so models run on the CPU, many times slower. {fix}")


def build_warnings(gpus: Iterable[GpuInfo], backends: tuple[str, ...]) -> tuple[str, ...]:
    """Loud sentences for GPUs the build cannot drive, and for a build that cannot be loaded."""
    if not backends:
        return ("llama-cpp-python could not be loaded, so no model can run: run `python3 tools/dev.py setup`.",)
    warnings = (_unused_gpu_warning(gpu, backends) for gpu in gpus)
    return tuple(dict.fromkeys(w for w in warnings if w))


# ---------------------------------------------------------------------------------------------
# Snapshots: probed or loaded from a profile

def probe(*, measure_bandwidth: bool = False) -> HardwareSnapshot:
    """This machine now. With measure_bandwidth, host bandwidth is measured (~0.3 s) when not cached."""
    gpus = _with_app_use(read_gpu_memory())
    backends = build_backends()
    return HardwareSnapshot(host=probe_host(measure_bandwidth=measure_bandwidth), gpus=gpus,
                            backends=backends, warnings=build_warnings(gpus, backends), source="probe")


def profiles_dir() -> Path:
    return locations.resources_dir() / PROFILES_FOLDER


def list_profiles() -> list[str]:
    """Names of the shipped profiles, e.g. ['apple-16gb', ..., 'laptop-8gb']."""
    return sorted(path.stem for path in profiles_dir().glob("*.json"))


def _profile_path(name_or_path: str) -> Path:
    shipped = profiles_dir() / f"{name_or_path}.json"
    if shipped.is_file():
        return shipped
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    raise HardwareError(f"No hardware profile named '{name_or_path}': use a file path or one of "
                        f"{', '.join(list_profiles()) or '(none shipped)'}.")


def load_profile(name_or_path: str) -> HardwareSnapshot:
    """A shipped profile by name ("laptop-8gb") or any snapshot JSON file; source = its name."""
    path = _profile_path(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise HardwareError(f"The hardware profile {path} cannot be read ({error}).") from None
    try:
        snapshot = HardwareSnapshot.from_json(text)
    except HardwareError as error:
        raise HardwareError(f"{path.name}: {error}") from None
    return replace(snapshot, source=path.stem)


__all__ = [
    "GpuInfo", "HostInfo", "DEVICE_KINDS", "HardwareSnapshot", "HardwareError", "probe", "load_profile", "list_profiles",
    "read_gpu_memory", "process_gpu_bytes", "build_backends", "build_warnings", "read_amd_gpus",
    "apple_gpu", "metal_working_set", "default_metal_working_set", "reinstall_command", "cpu_name",
    "supports_gpu_offload", "build_library", "ggml_library", "probe_host", "profiles_dir",
]
