"""Choose how a model runs on a machine: how many layers go to the GPU(s), which context, and the verdict.

plan(model, hardware, request) searches like llama.cpp's own fitter (common/fit.cpp), on our estimator
(core.fit.estimate) instead of repeated dry runs:

1. every layer on the GPU(s) at the requested context (the trained one when none is given);
2. if that does not fit and shrinking is allowed: every layer at the largest context down to the minimum
   (4096, or the trained context when smaller);
3. otherwise the most layers that fit the GPUs at the minimum context, then the largest context that
   still fits with those layers; layers are split across GPUs in proportion to their free memory, as
   llama.cpp's default tensor split does;
4. nothing on the GPU: the largest context that fits the host; else "Too large for this machine".

For a MoE model that does not fit whole, a second candidate keeps every layer on the GPU(s) but the expert
tensors of the first k layers in host memory (llama.cpp's --n-cpu-moe: attention, KV cache and shared
experts stay on the GPU), with the fewest k that fit; the planner takes whichever of the two is predicted
faster (core.fit.speed: the active experts' bytes read per token on each device over its bandwidth).

The predicted generation speed is the speed model's figure times this machine's speed factor for the devices
holding the weights (core.fit.calibration: measured over predicted on earlier loads, 1 when never measured); the
uncalibrated figure stays on the Plan, since a measured speed is recorded against it.

Each GPU may use its free memory minus a safety margin (1 GiB, as fit.cpp, covering the backend's own
context and fragmentation); the host keeps 10 % of its RAM (between 1 and 2 GiB) for the system. n_gpu_layers
counts llama.cpp's offloadable layers: the repeating blocks and the output layer (n_layers + 1).
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from core.machine import bandwidth as bandwidth_table
from core.gguf.reader import ModelInfo
from core.machine.hardware import USABLE_BACKENDS, GpuInfo, HardwareSnapshot
from core.fit.estimate import (HOST, CTX_PAD, DeviceMemory, EstimateError, Footprint, GpuDevice, MemoryEstimate,
                               MemorySettings, check_settings, estimate, footprint, kv_layer_bytes)
from core.gguf.kv_types import needs_flash_attention
from core.fit import calibration
from core.fit.speed import NetworkLink, SpeedPrediction, predict_speed
from core.platform.units import format_bytes

log = logging.getLogger(__name__)

MiB = 1024 * 1024
GiB = 1024 * MiB
DEFAULT_GPU_MARGIN = 1024 * MiB
HOST_RESERVE_SHARE = 0.10
HOST_RESERVE_MIN = 1 * GiB
HOST_RESERVE_MAX = 2 * GiB
DEFAULT_MIN_CONTEXT = 4096

GPU_KINDS = ("gpu", "worker")
FULL = "Runs fully on GPU"
CPU_ONLY = "CPU only"
TOO_LARGE = "Too large for this machine"


class PlanError(ValueError):
    """A request the planner cannot work with (a context below 1, an unknown KV type, ...)."""


@dataclass(frozen=True)
class PlanRequest:
    context: int | None = None               # None: the model's trained context
    kv_type: str = "f16"
    flash_attn: bool | str = "auto"          # "auto": on (every llama.cpp backend we target supports it)
    n_gpu_layers: int | None = None          # None: choose; a number: exactly that many, fit or not (-1 = all)
    min_context: int = DEFAULT_MIN_CONTEXT
    safety_margin_bytes: int = DEFAULT_GPU_MARGIN   # kept free on each GPU
    host_reserve_bytes: int | None = None    # kept free on the host; None: 10 % of RAM, 1 to 2 GiB
    allow_context_shrink: bool = True
    n_batch: int = 512
    n_ubatch: int = 512
    n_seq: int = 1
    cpu_expert_layers: int | None = None     # MoE: None: choose; a number: the experts of that many layers on the host


@dataclass(frozen=True)
class DevicePlan:
    name: str                # the GPU's name, or "CPU" for the host
    kind: str                # "gpu" | "worker" (another computer's device, over RPC) | "host"
    free_bytes: int
    budget_bytes: int        # free minus the margin: what the plan may use
    weights_bytes: int
    kv_bytes: int
    compute_bytes: int
    other_bytes: int
    total_bytes: int
    address: str | None = None   # a worker's host:port

    @property
    def fits(self) -> bool:
        return self.total_bytes <= self.budget_bytes

    @property
    def is_gpu_like(self) -> bool:
        """A device layers are offloaded to: a GPU of this computer or a worker's device."""
        return self.kind in GPU_KINDS


@dataclass(frozen=True)
class Plan:
    verdict: str
    n_gpu_layers: int        # llama.cpp's n_gpu_layers for this plan
    n_layers: int            # offloadable layers: repeating blocks + the output layer
    context: int
    kv_type: str
    flash_attn: bool
    devices: tuple[DevicePlan, ...]   # GPUs, then the host
    predicted_tokens_per_second: float | None
    predicted_prompt_tokens_per_second: float | None
    deciding_figure: str
    explanation: str
    cpu_expert_layers: int = 0          # MoE: the expert tensors of the first N layers stay in host memory
    placement: str = ""                 # one short sentence: where the layers (and experts) go, and the speed
    uncalibrated_tokens_per_second: float | None = None   # the speed model alone, before this machine's history

    @property
    def fits(self) -> bool:
        return self.verdict != TOO_LARGE

    @property
    def placement_devices(self) -> tuple[str, ...]:
        """The devices the model runs on, the placement a measured speed is recorded for: the GPUs holding
        weights, and the host ("CPU") when it holds layers or experts, not only the token embeddings every load
        keeps there."""
        return _placement_devices(self.devices, self.n_gpu_layers < self.n_layers or self.cpu_expert_layers > 0)

    def to_dict(self) -> dict:
        data = asdict(self)
        for device in data["devices"]:
            device.pop("budget_bytes", None)
            if device["address"] is None:  # only a worker's device has one
                del device["address"]
        return data


# --- machine ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Machine:
    gpus: tuple[GpuInfo, ...]
    ids: tuple[GpuDevice, ...]        # estimator names "GPU0", "GPU1", ... with the free memory that splits
    gpu_budgets: tuple[int, ...]
    host_free: int
    host_budget: int
    unified: bool
    bandwidth: dict[str, float | None]
    host_cores: int
    host_cpu: str             # the host's CPU, naming it in this machine's speed history
    links: dict[str, NetworkLink]   # estimator name -> the network link of a worker's device


def _usable(gpu: GpuInfo, backends: tuple[str, ...]) -> bool:
    wanted = USABLE_BACKENDS.get(gpu.vendor, ())
    return not backends or "GPU" in backends or any(name in backends for name in wanted)


def _machine(hardware: HardwareSnapshot, request: PlanRequest) -> _Machine:
    gpus = tuple(g for g in hardware.gpus if _usable(g, hardware.backends))
    ids = tuple(GpuDevice(f"GPU{i}", max(g.free_bytes, 0)) for i, g in enumerate(gpus))
    budgets = tuple(max(g.free_bytes - request.safety_margin_bytes, 0) for g in gpus)
    host = hardware.host
    reserve = request.host_reserve_bytes
    if reserve is None:
        reserve = min(max(int(host.ram_total_bytes * HOST_RESERVE_SHARE), HOST_RESERVE_MIN), HOST_RESERVE_MAX)
    host_speed = host.memory_bandwidth_bytes_per_s or _cached_host_bandwidth()
    speeds: dict[str, float | None] = {HOST: host_speed}
    links: dict[str, NetworkLink] = {}
    on_cpu = not any(not g.is_worker for g in gpus)
    for device, gpu in zip(ids, gpus):
        speeds[device.name] = gpu.bandwidth_bytes_per_s or bandwidth_table.gpu_bandwidth(gpu.name)
        if gpu.is_worker:
            # A worker on this computer with no GPU of its own here lends this computer's RAM (its CPU backend).
            if not speeds[device.name] and on_cpu and _is_loopback(gpu.address):
                speeds[device.name] = host_speed
            links[device.name] = NetworkLink(gpu.address or gpu.name, gpu.link_round_trip_s or 0.0,
                                             gpu.link_bandwidth_bytes_per_s)
    return _Machine(gpus, ids, budgets, host.ram_available_bytes, max(host.ram_available_bytes - reserve, 0),
                    any(g.unified_memory for g in gpus), speeds, host.physical_cores, host.cpu_name, links)


def _is_loopback(address: str | None) -> bool:
    host = (address or "").rpartition(":")[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


def _cached_host_bandwidth() -> float | None:
    try:
        return bandwidth_table.cached_host_bandwidth()
    except Exception:  # a broken cache must not stop planning
        return None


# --- search -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Trial:
    n_gpu_layers: int
    context: int
    memory: MemoryEstimate
    fits: bool
    cpu_expert_layers: int = 0


class _Search:
    """Estimates for one model on one machine, at any (n_gpu_layers, context)."""

    def __init__(self, model: ModelInfo, machine: _Machine, base: MemorySettings):
        self.model = model
        self.machine = machine
        self.base = base
        self.prints: Footprint = footprint(model)
        self.all_layers = model.n_layers + 1

    @property
    def is_moe(self) -> bool:
        return any(self.prints.expert_weights)

    def trial(self, n_gpu_layers: int, context: int, cpu_expert_layers: int = 0) -> _Trial:
        settings = replace(self.base, n_gpu_layers=n_gpu_layers, n_ctx=context, cpu_expert_layers=cpu_expert_layers)
        memory = estimate(self.model, settings, self.machine.ids, self.prints)
        return _Trial(n_gpu_layers, context, memory, self._fits(memory), cpu_expert_layers)

    def _fits(self, memory: MemoryEstimate) -> bool:
        gpu_total = 0
        for device, budget in zip(memory.devices[:-1], self.machine.gpu_budgets):
            gpu_total += device.total_bytes
            if device.total_bytes > budget:
                return False
        host_need = memory.host.total_bytes + (gpu_total if self.machine.unified else 0)
        return host_need <= self.machine.host_budget

    def gpus_fit(self, trial: _Trial) -> bool:
        return all(d.total_bytes <= b for d, b in zip(trial.memory.devices[:-1], self.machine.gpu_budgets))

    def most_layers(self, context: int) -> _Trial:
        """The most layers whose share fits the GPUs (GPU memory grows with layers: bisect)."""
        if not self.machine.ids:
            return self.trial(0, context)
        top = self.trial(self.all_layers, context)
        if self.gpus_fit(top):
            return top
        lo, hi = 0, self.all_layers  # lo fits the GPUs, hi does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.gpus_fit(self.trial(mid, context)):
                lo = mid
            else:
                hi = mid
        return self.trial(lo, context)

    def fewest_expert_layers(self, context: int) -> _Trial | None:
        """Every layer on the GPU(s), the experts of the fewest first layers on the host that fit the GPUs."""
        n = self.model.n_layers
        if not self.gpus_fit(self.trial(self.all_layers, context, n)):
            return None
        lo, hi = 0, n  # lo does not fit the GPUs, hi does
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.gpus_fit(self.trial(self.all_layers, context, mid)):
                hi = mid
            else:
                lo = mid
        return self.trial(self.all_layers, context, hi)

    def largest_context(self, n_gpu_layers: int, low: int, high: int, cpu_expert_layers: int = 0) -> _Trial | None:
        """The largest context in [low, high] (steps of 256) that fits everywhere with these layers."""
        best = self.trial(n_gpu_layers, high, cpu_expert_layers)
        if best.fits:
            return best
        floor = self.trial(n_gpu_layers, low, cpu_expert_layers)
        if not floor.fits:
            return None
        lo, hi = low // CTX_PAD, (high + CTX_PAD - 1) // CTX_PAD
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.trial(n_gpu_layers, mid * CTX_PAD, cpu_expert_layers).fits:
                lo = mid
            else:
                hi = mid
        return self.trial(n_gpu_layers, max(lo * CTX_PAD, low), cpu_expert_layers)

    def speed(self, trial: _Trial) -> SpeedPrediction:
        kv_per_layer = kv_layer_bytes(self.model, replace(self.base, n_ctx=trial.context), self.prints)
        return predict_speed(self.model, self.prints, trial.memory.layer_devices, kv_per_layer,
                             self.machine.bandwidth, self.machine.host_cores, trial.cpu_expert_layers,
                             self.machine.links)


# --- public entry point -------------------------------------------------------------------------------

def plan(model: ModelInfo, hardware: HardwareSnapshot, request: PlanRequest | None = None) -> Plan:
    """Where `model` goes on `hardware`, how fast it runs, and why, as one verdict."""
    request = request or PlanRequest()
    settings = _settings(model, request)
    machine = _machine(hardware, request)
    search = _Search(model, machine, settings)
    context = settings.n_ctx
    experts = request.cpu_expert_layers
    if experts is not None:
        experts = max(0, min(experts, model.n_layers)) if search.is_moe else 0
    if request.n_gpu_layers is not None:
        wanted = search.all_layers if request.n_gpu_layers < 0 else min(request.n_gpu_layers, search.all_layers)
        chosen = search.trial(wanted if machine.ids else 0, context, experts or 0)
    elif experts is not None:
        chosen = _choose_with_experts(search, request, context, experts)
    else:
        chosen = _faster(search, _choose(search, request, context), _expert_placement(search, request, context))
    return _build_plan(search, request, chosen)


def _settings(model: ModelInfo, request: PlanRequest) -> MemorySettings:
    context = request.context if request.context is not None else (model.context_length or DEFAULT_MIN_CONTEXT)
    if context < 1:
        raise PlanError(f"A context of {context:,} tokens cannot hold a conversation; use at least 1.")
    flash = request.flash_attn if isinstance(request.flash_attn, bool) else True
    if needs_flash_attention(request.kv_type) and not flash:
        raise PlanError(f"A {request.kv_type} KV cache needs flash attention; turn it on or use f16.")
    settings = MemorySettings(n_gpu_layers=0, n_ctx=context, n_batch=request.n_batch, n_ubatch=request.n_ubatch,
                              kv_type=request.kv_type, flash_attn=flash, n_seq=request.n_seq)
    try:
        check_settings(settings)
    except EstimateError as error:
        raise PlanError(str(error)) from error
    return settings


def _choose(search: _Search, request: PlanRequest, context: int) -> _Trial:
    """Every layer on the GPU(s), then fewer layers, then the host alone; the closest miss if nothing fits."""
    minimum = min(request.min_context, context) if request.allow_context_shrink else context
    for step in (_all_on_gpus, _some_on_gpus, _host_only):
        chosen = step(search, minimum, context)
        if chosen is not None:
            return chosen
    return search.most_layers(minimum)  # too large: report the most layers the GPUs take


def _all_on_gpus(search: _Search, minimum: int, context: int) -> _Trial | None:
    if not search.machine.ids:
        return None
    return search.largest_context(search.all_layers, minimum, context)


def _some_on_gpus(search: _Search, minimum: int, context: int) -> _Trial | None:
    """The most layers the GPUs take at the smallest context, then the largest context those layers allow."""
    if not search.machine.ids:
        return None
    layered = search.most_layers(minimum)
    if layered.n_gpu_layers == 0:
        return None
    return search.largest_context(layered.n_gpu_layers, minimum, context)


def _host_only(search: _Search, minimum: int, context: int) -> _Trial | None:
    return search.largest_context(0, minimum, context)


def _expert_placement(search: _Search, request: PlanRequest, context: int) -> _Trial | None:
    """Every layer on the GPU(s) with the experts of the fewest first layers on the host, at the largest
    context that fits; None for a dense model, without a GPU, or when it does not fit."""
    if not search.is_moe or not search.machine.ids:
        return None
    minimum = min(request.min_context, context) if request.allow_context_shrink else context
    fewest = search.fewest_expert_layers(minimum)
    if fewest is None or fewest.cpu_expert_layers == 0:
        return None  # all on the GPU(s) fits already: the whole-layer search found it
    return search.largest_context(search.all_layers, minimum, context, fewest.cpu_expert_layers)


def _choose_with_experts(search: _Search, request: PlanRequest, context: int, experts: int) -> _Trial:
    """The user fixed the experts on the host: the most layers that fit with them, like the plain search."""
    minimum = min(request.min_context, context) if request.allow_context_shrink else context
    if not search.machine.ids:
        return search.trial(0, context)
    for layers in range(search.all_layers, -1, -1):
        trial = search.largest_context(layers, minimum, context, experts)
        if trial is not None:
            return trial
    return search.trial(search.all_layers, minimum, experts)


def _faster(search: _Search, layered: _Trial, experts: _Trial | None) -> _Trial:
    """The expert placement when it fits and is predicted faster than (or as fast as) whole-layer offload."""
    if experts is None or not experts.fits:
        return layered
    if not layered.fits:
        return experts
    mine, theirs = search.speed(experts).tokens_per_second, search.speed(layered).tokens_per_second
    if mine is None or theirs is None:
        return experts if experts.context >= layered.context else layered
    return experts if mine >= theirs else layered


# --- the result ---------------------------------------------------------------------------------------

def _build_plan(search: _Search, request: PlanRequest, chosen: _Trial) -> Plan:
    machine = search.machine
    devices = _device_plans(machine, chosen.memory)
    verdict = _verdict(chosen, search.all_layers, search.model.n_layers)
    speed = SpeedPrediction(None, None, 0)
    if verdict != TOO_LARGE:
        speed = search.speed(chosen)
    figure, why = _explain(search, request, chosen, devices, verdict)
    machines = _layers_by_machine(search, chosen) if verdict != TOO_LARGE else ""
    if machines:
        why += f" Across computers: {machines}."
    uncalibrated = speed.tokens_per_second
    host_runs = chosen.n_gpu_layers < search.all_layers or chosen.cpu_expert_layers > 0
    tokens = _round(_calibrated(uncalibrated, _placement_devices(devices, host_runs), machine.host_cpu))
    return Plan(verdict, chosen.n_gpu_layers, search.all_layers, chosen.context, search.base.kv_type,
                search.base.flash_attn, devices, tokens, _round(speed.prompt_tokens_per_second), figure, why,
                chosen.cpu_expert_layers, _placement(chosen, search, tokens, machines),
                None if uncalibrated is None else round(uncalibrated, 3))


def _calibrated(tokens_per_second: float | None, placement: tuple[str, ...], host_cpu: str) -> float | None:
    """The speed model's figure times what this machine measured on this placement."""
    if tokens_per_second is None:
        return None
    return tokens_per_second * calibration.speed_factor(placement, host_cpu)


def _placement_devices(devices: tuple[DevicePlan, ...], host_runs_layers: bool) -> tuple[str, ...]:
    gpus = tuple(d.name for d in devices if d.is_gpu_like and d.weights_bytes > 0)
    return gpus + (HOST,) if host_runs_layers or not gpus else gpus


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _device_plans(machine: _Machine, memory: MemoryEstimate) -> tuple[DevicePlan, ...]:
    out = []
    for gpu, device, budget in zip(machine.gpus, memory.devices[:-1], machine.gpu_budgets):
        kind = "worker" if gpu.is_worker else "gpu"
        out.append(_device_plan(gpu.name, kind, gpu.free_bytes, budget, device, gpu.address))
    out.append(_device_plan(HOST, "host", machine.host_free, machine.host_budget, memory.host))
    return tuple(out)


def _device_plan(name: str, kind: str, free: int, budget: int, memory: DeviceMemory,
                 address: str | None = None) -> DevicePlan:
    return DevicePlan(name, kind, free, budget, memory.weights_bytes, memory.kv_bytes, memory.compute_bytes,
                      memory.other_bytes, memory.total_bytes, address)


def _verdict(chosen: _Trial, all_layers: int, n_layers: int) -> str:
    if not chosen.fits:
        return TOO_LARGE
    if chosen.cpu_expert_layers and chosen.n_gpu_layers >= all_layers:
        return f"Partial: {_experts_on_cpu(chosen.cpu_expert_layers, n_layers)}"
    if chosen.n_gpu_layers >= all_layers:
        return FULL
    if chosen.n_gpu_layers > 0:
        return f"Partial: {chosen.n_gpu_layers} of {all_layers} layers on GPU"
    return CPU_ONLY


def _explain(search: _Search, request: PlanRequest, chosen: _Trial, devices: tuple[DevicePlan, ...],
             verdict: str) -> tuple[str, str]:
    """The deciding figure (the device closest to, or furthest over, its limit) and one sentence."""
    deciding = _deciding_device(devices)
    figure = (f"{_label(deciding).capitalize() if deciding.kind == 'host' else _label(deciding)} needs {format_bytes(deciding.total_bytes)} of "
              f"{format_bytes(deciding.budget_bytes)} usable")
    asked = search.base.n_ctx
    context = f" with a context of {chosen.context:,} tokens" + (f" ({asked:,} asked)" if chosen.context < asked else "")
    if verdict == TOO_LARGE:
        missing = format_bytes(max(deciding.total_bytes - deciding.budget_bytes, 0))
        return figure, f"Does not fit: {_label(deciding)} would need {missing} more than it can spare{context}."
    if verdict == FULL:
        return figure, f"All {chosen.n_gpu_layers} layers fit in GPU memory{context}."
    if chosen.cpu_expert_layers and chosen.n_gpu_layers >= search.all_layers:
        return figure, (f"Attention, KV cache and shared weights of all {chosen.n_gpu_layers} layers fit in GPU "
                        f"memory; the {_experts_on_cpu(chosen.cpu_expert_layers, search.model.n_layers)} "
                        f"run from system RAM{context}.")
    if verdict == CPU_ONLY:
        reason = ("no usable GPU" if not search.machine.ids else
                  "as asked" if request.n_gpu_layers == 0 else "not even one layer fits the GPU")
        return figure, f"Runs from system RAM ({reason}){context}."
    on_gpus = format_bytes(sum(d.total_bytes for d in devices if d.is_gpu_like))
    return figure, (f"{chosen.n_gpu_layers} of {search.all_layers} layers fit in GPU memory ({on_gpus}), "
                    f"the rest run from system RAM{context}.")


def _experts_on_cpu(k: int, n_layers: int) -> str:
    return f"experts of {k} of {n_layers} layers on the CPU"


def _layers_by_machine(search: _Search, chosen: _Trial) -> str:
    """'22 layers here, 58 on 192.168.1.20:50052' when workers hold layers, else ''. "Here" is this computer,
    its GPUs and RAM together; the output layer counts as a layer, as in n_gpu_layers."""
    machine_of = {device.name: _machine_label(gpu) for device, gpu in zip(search.machine.ids, search.machine.gpus)
                  if gpu.is_worker}
    counts: dict[str, int] = {}
    for device in chosen.memory.layer_devices:
        label = machine_of.get(device, "here")
        counts[label] = counts.get(label, 0) + 1
    if set(counts) <= {"here"}:
        return ""
    counts.setdefault("here", 0)
    parts = [f"{count} layer{'s' if count != 1 else ''} here" if label == "here" else f"{count} on {label}"
             for label, count in sorted(counts.items(), key=lambda item: item[0] != "here")]
    return ", ".join(parts)


def _machine_label(gpu: GpuInfo) -> str:
    """A worker's address, with its device's name when one is known (a profile's, not llama.cpp's RPC0[...])."""
    address = gpu.address or gpu.name
    named = gpu.name and not (gpu.name.startswith("RPC") and gpu.name.endswith("]"))
    return f"{address} ({gpu.name})" if named else address


def _placement(chosen: _Trial, search: _Search, tokens: float | None, machines: str = "") -> str:
    """One short sentence for the picker: where the layers and experts go, and the predicted speed."""
    if machines:
        where = machines[0].upper() + machines[1:]
    elif chosen.cpu_expert_layers and chosen.n_gpu_layers > 0:
        where = _experts_on_cpu(chosen.cpu_expert_layers, search.model.n_layers)
        where = where[0].upper() + where[1:]
        if chosen.n_gpu_layers < search.all_layers:
            where += f", {chosen.n_gpu_layers} of {search.all_layers} layers on GPU"
    elif chosen.n_gpu_layers >= search.all_layers and search.machine.ids:
        where = "All layers on GPU"
    elif chosen.n_gpu_layers > 0:
        where = f"{chosen.n_gpu_layers} of {search.all_layers} layers on GPU"
    else:
        where = "All layers on the CPU"
    return where + (f" · ~{tokens:.0f} tok/s" if tokens else "")


def _deciding_device(devices: tuple[DevicePlan, ...]) -> DevicePlan:
    over = [d for d in devices if not d.fits]
    if over:
        return max(over, key=lambda d: d.total_bytes - d.budget_bytes)
    return max(devices, key=lambda d: d.total_bytes / d.budget_bytes if d.budget_bytes else float("inf"))


def _label(device: DevicePlan) -> str:
    return "the host" if device.kind == "host" else device.name

