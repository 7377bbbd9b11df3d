"""core.machine.hardware and core.machine.bandwidth: probing, profiles, strict JSON, AMD sysfs, warnings, bandwidth."""
from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from core.machine import bandwidth, hardware
from core.machine.hardware import GpuInfo, HardwareError, HardwareSnapshot

GiB = 2**30
PROFILES = ["apple-128gb", "apple-16gb", "apple-36gb", "cpu-only-16gb", "desktop-24gb", "dual-24gb", "laptop-8gb"]


def nvidia_driver_present() -> bool:
    return Path("/proc/driver/nvidia/version").exists() or sys.platform == "win32"


# --- probing this machine --------------------------------------------------------------------

def test_probe_reports_sane_host_figures():
    snapshot = hardware.probe()
    host = snapshot.host
    assert snapshot.source == "probe"
    assert host.ram_total_bytes > GiB
    assert 0 < host.ram_available_bytes <= host.ram_total_bytes
    assert 1 <= host.physical_cores <= host.logical_cores
    assert host.cpu_name and host.os


def gpu_driver_present() -> bool:
    return nvidia_driver_present() or hardware.is_apple_silicon() or bool(hardware.read_amd_gpus())


def test_a_machine_without_a_gpu_driver_reports_no_gpus():
    if gpu_driver_present():
        pytest.skip("this machine has a GPU driver: test_each_probed_gpu_has_sane_figures checks its GPUs")
    assert hardware.probe().gpus == ()


def test_each_probed_gpu_has_sane_figures():
    gpus = hardware.probe().gpus
    if not gpus:
        pytest.skip("no GPU on this machine to check (the stand-in NVML and sysfs tests below read GPU figures)")
    assert len({gpu.index for gpu in gpus}) == len(gpus)
    for gpu in gpus:
        assert gpu.name and gpu.vendor in hardware.VENDORS
        assert gpu.total_bytes > 0 and 0 <= gpu.free_bytes <= gpu.total_bytes
        assert 0 <= gpu.used_bytes <= gpu.total_bytes


def test_build_has_cpu_and_rpc_backends():
    backends = hardware.build_backends()
    assert "CPU" in backends and "RPC" in backends
    assert hardware.supports_gpu_offload()  # RPC counts as offload for llama.cpp


def test_probe_round_trips_through_json():
    snapshot = hardware.probe()
    assert HardwareSnapshot.from_json(snapshot.to_json()) == snapshot


def test_read_gpu_memory_never_raises(monkeypatch):
    def broken():
        raise RuntimeError("driver fell over")

    monkeypatch.setattr(hardware, "read_nvidia_gpus", broken)
    assert hardware.read_gpu_memory() == ()


def nvidia_gpus() -> list[GpuInfo]:
    return [gpu for gpu in hardware.read_gpu_memory() if gpu.vendor == "nvidia"]


def test_without_an_nvidia_gpu_no_process_uses_gpu_memory():
    if nvidia_gpus():
        pytest.skip("this machine has NVIDIA GPUs: test_each_nvidia_gpu_reports_our_processes_share checks them")
    assert hardware.process_gpu_bytes([os.getpid()]) == {}


def test_each_nvidia_gpu_reports_our_processes_share():
    gpus = nvidia_gpus()
    if not gpus:
        pytest.skip("no NVIDIA GPU on this machine (test_process_gpu_bytes_counts_each_process_once uses a "
                    "stand-in NVML)")
    usage = hardware.process_gpu_bytes([os.getpid()])
    assert set(usage) == {gpu.index for gpu in gpus}
    for gpu in gpus:
        assert 0 <= usage[gpu.index] <= gpu.used_bytes


# --- NVIDIA through a stand-in NVML ----------------------------------------------------------

class FakeNvml:
    """The few pynvml calls hardware.py makes, for two GPUs."""

    def nvmlDeviceGetName(self, handle):
        return ["NVIDIA GeForce RTX 4090", b"NVIDIA GeForce RTX 3090"][handle]

    def nvmlDeviceGetMemoryInfo(self, handle):
        return SimpleNamespace(total=24 * GiB, free=23 * GiB, used=1 * GiB)

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return [SimpleNamespace(pid=100, usedGpuMemory=3 * GiB), SimpleNamespace(pid=999, usedGpuMemory=GiB)]

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle):
        # pid 100 again (listed by both calls), and a WDDM-style unknown figure.
        return [SimpleNamespace(pid=100, usedGpuMemory=3 * GiB), SimpleNamespace(pid=101, usedGpuMemory=None)]


@pytest.fixture
def fake_nvml(monkeypatch):
    monkeypatch.setattr(hardware, "_NVML", SimpleNamespace(handles=lambda: (FakeNvml(), [0, 1])))


def test_nvidia_gpus_from_nvml(fake_nvml):
    gpus = hardware.read_gpu_memory()
    assert [g.name for g in gpus] == ["NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 3090"]
    assert gpus[0].bandwidth_bytes_per_s == 1008e9 and gpus[1].free_bytes == 23 * GiB


def test_process_gpu_bytes_counts_each_process_once(fake_nvml):
    assert hardware.process_gpu_bytes([100, 101]) == {0: 3 * GiB, 1: 3 * GiB}
    assert hardware.process_gpu_bytes([12345]) == {0: 0, 1: 0}  # not on any GPU
    assert hardware.process_gpu_bytes([101]) == {}  # on the GPUs, but WDDM hides its figure


def test_probe_fills_in_what_our_processes_use(fake_nvml, monkeypatch):
    monkeypatch.setattr(hardware, "process_gpu_bytes", lambda pids: {0: GiB} if os.getpid() in pids else {})
    gpus = hardware.probe().gpus
    assert [g.app_used_bytes for g in gpus] == [GiB, None]


# --- profiles and strict JSON ----------------------------------------------------------------

def test_every_profile_is_shipped():
    assert hardware.list_profiles() == PROFILES


@pytest.mark.parametrize("name", PROFILES)
def test_profile_round_trips_through_json(name):
    snapshot = hardware.load_profile(name)
    assert snapshot.source == name
    assert HardwareSnapshot.from_json(snapshot.to_json()) == snapshot
    assert HardwareSnapshot.from_dict(json.loads(snapshot.to_json())) == snapshot
    assert snapshot.warnings == hardware.build_warnings(snapshot.gpus, snapshot.backends) == ()
    for gpu in snapshot.gpus:
        assert gpu.bandwidth_bytes_per_s == bandwidth.gpu_bandwidth(gpu.name)
        assert gpu.free_bytes + gpu.used_bytes == gpu.total_bytes


@pytest.mark.parametrize("name", ["apple-16gb", "apple-36gb", "apple-128gb"])
def test_apple_profiles_use_the_metal_working_set(name):
    snapshot = hardware.load_profile(name)
    (gpu,) = snapshot.gpus
    assert gpu.unified_memory and gpu.vendor == "apple"
    assert gpu.total_bytes == hardware.default_metal_working_set(snapshot.host.ram_total_bytes)


def test_profile_from_a_path_is_named_after_the_file(tmp_path):
    path = tmp_path / "my-box.json"
    path.write_text(hardware.load_profile("desktop-24gb").to_json())
    assert hardware.load_profile(str(path)).source == "my-box"


def test_unknown_profile_lists_the_shipped_ones():
    with pytest.raises(HardwareError, match="No hardware profile named 'nope'.*laptop-8gb"):
        hardware.load_profile("nope")


def test_broken_profile_file_names_the_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{")
    with pytest.raises(HardwareError, match=r"^broken\.json: The hardware snapshot is not valid JSON"):
        hardware.load_profile(str(path))


def _valid() -> dict:
    return json.loads(hardware.load_profile("dual-24gb").to_json())


def _edit(change) -> str:
    data = _valid()
    change(data)
    return json.dumps(data)


BAD_SNAPSHOTS = {
    "not json": ("{'host': 1}", "is not valid JSON"),
    "a list": ("[]", "top level must be a JSON object, not a list"),
    "no host": (_edit(lambda d: d.pop("host")), "lacks the field 'host'"),
    "bytes as text": (_edit(lambda d: d["gpus"][0].update(total_bytes="24 GB")), r"gpus\[0\]\.total_bytes must be a whole number"),
    "negative free": (_edit(lambda d: d["gpus"][1].update(free_bytes=-1)), r"gpus\[1\]\.free_bytes must be at least 0"),
    "free over total": (_edit(lambda d: d["gpus"][0].update(free_bytes=10**15)), "more memory free"),
    "bool as a number": (_edit(lambda d: d["host"].update(logical_cores=True)), "host.logical_cores must be a whole number"),
    "zero cores": (_edit(lambda d: d["host"].update(physical_cores=0)), "host.physical_cores must be at least 1"),
    "unknown vendor": (_edit(lambda d: d["gpus"][0].update(vendor="intel")), "vendor must be one of nvidia"),
    "typo in a field": (_edit(lambda d: d["host"].update(ram_totl_bytes=1)), "host has unknown field.*ram_totl_bytes"),
    "ram over total": (_edit(lambda d: d["host"].update(ram_available_bytes=10**15)), "more RAM available"),
    "duplicate index": (_edit(lambda d: d["gpus"][1].update(index=0)), "same GPU index twice"),
    "future format": (_edit(lambda d: d.update(format=2)), "has format 2"),
    "backends not strings": (_edit(lambda d: d.update(backends="CUDA")), "backends must be a list of strings"),
    "gpu not an object": (_edit(lambda d: d["gpus"].append(3)), r"gpus\[2\] must be a JSON object, not a number"),
    "bad bandwidth": (_edit(lambda d: d["host"].update(memory_bandwidth_bytes_per_s=-5)), "positive number of bytes per second"),
    "unknown kind": (_edit(lambda d: d["gpus"][0].update(kind="tpu")), r"gpus\[0\]\.kind must be one of gpu, worker"),
    "worker without address": (_edit(lambda d: d["gpus"][1].update(kind="worker", vendor="rpc")),
                               r"gpus\[1\] \(.*\) is a worker's device but lacks the worker's 'address'"),
    "negative round trip": (_edit(lambda d: d["gpus"][0].update(link_round_trip_s=-1)), "link_round_trip_s must be a number of seconds"),
}


@pytest.mark.parametrize("name", PROFILES)
def test_a_local_gpus_json_is_unchanged_by_the_worker_fields(name):
    """Profiles written before workers existed read the same, and a local GPU writes no worker fields."""
    path = hardware.profiles_dir() / f"{name}.json"
    for gpu in json.loads(hardware.load_profile(name).to_json())["gpus"]:
        assert not set(hardware.WORKER_FIELDS) & set(gpu)
    assert json.loads(path.read_text())["gpus"] == json.loads(hardware.load_profile(name).to_json())["gpus"]


def test_a_workers_device_round_trips_through_json():
    snapshot = hardware.load_profile("desktop-24gb")
    worker = GpuInfo(index=1, name="RPC0[10.0.0.5:50052]", vendor="rpc", total_bytes=8 * GiB, free_bytes=7 * GiB,
                     used_bytes=GiB, kind="worker", address="10.0.0.5:50052", link_bandwidth_bytes_per_s=1.1e8,
                     link_round_trip_s=0.0004)
    snapshot = replace(snapshot, gpus=snapshot.gpus + (worker,))
    data = json.loads(snapshot.to_json())["gpus"][1]
    assert (data["kind"], data["address"], data["link_round_trip_s"]) == ("worker", "10.0.0.5:50052", 0.0004)
    assert HardwareSnapshot.from_json(snapshot.to_json()) == snapshot


@pytest.mark.parametrize("case", BAD_SNAPSHOTS)
def test_bad_snapshot_json_gives_a_sentence(case):
    text, expected = BAD_SNAPSHOTS[case]
    with pytest.raises(HardwareError, match=expected) as caught:
        HardwareSnapshot.from_json(text)
    message = str(caught.value)
    assert message.startswith("The hardware snapshot") and message.endswith((".", ").")), message


# --- AMD on Linux: sysfs --------------------------------------------------------------------

def _fake_card(root: Path, card: str, vendor: str, total: int | None, used: int | None, product: str | None):
    device = root / card / "device"
    device.mkdir(parents=True)
    (device / "vendor").write_text(vendor + "\n")
    if total is not None:
        (device / "mem_info_vram_total").write_text(f"{total}\n")
    if used is not None:
        (device / "mem_info_vram_used").write_text(f"{used}\n")
    if product:
        (device / "product_name").write_text(product + "\n")


def test_amd_gpus_from_sysfs(tmp_path):
    _fake_card(tmp_path, "card1", "0x1002", 24 * GiB, 2 * GiB, "AMD Radeon RX 7900 XTX")
    _fake_card(tmp_path, "card0", "0x8086", None, None, None)  # an Intel iGPU: skipped
    _fake_card(tmp_path, "card2", "0x1002", 16 * GiB, GiB // 2, None)  # no product name
    _fake_card(tmp_path, "card3", "0x1002", None, None, None)  # no VRAM figures: skipped
    (tmp_path / "card1-DP-1").mkdir()  # a connector, not a card
    gpus = hardware.read_amd_gpus(tmp_path)
    assert [(g.index, g.name, g.vendor) for g in gpus] == [
        (0, "AMD Radeon RX 7900 XTX", "amd"), (1, "AMD GPU (card2)", "amd")]
    assert (gpus[0].total_bytes, gpus[0].used_bytes, gpus[0].free_bytes) == (24 * GiB, 2 * GiB, 22 * GiB)
    assert gpus[0].bandwidth_bytes_per_s == 960e9 and gpus[1].bandwidth_bytes_per_s is None


def test_amd_sysfs_missing_root_gives_nothing(tmp_path):
    assert hardware.read_amd_gpus(tmp_path / "absent") == ()


# --- Apple Silicon -------------------------------------------------------------------------

def test_metal_working_set_default_and_override():
    assert hardware.metal_working_set(16 * GiB, None) == 16 * GiB * 2 // 3
    assert hardware.metal_working_set(32 * GiB, None) == 21845 * 2**20 + 2**20 // 3  # Metal reports 21845.33 MiB
    assert hardware.metal_working_set(64 * GiB, None) == 48 * GiB
    assert hardware.metal_working_set(64 * GiB, 57344) == 56 * GiB  # sysctl iogpu.wired_limit_mb=57344
    assert hardware.metal_working_set(16 * GiB, 0) == 16 * GiB * 2 // 3  # 0 means "default"


def test_apple_gpu_free_is_bounded_by_available_ram():
    gpu = hardware.apple_gpu(16 * GiB, 6 * GiB, None, "Apple M2")
    assert (gpu.unified_memory, gpu.free_bytes, gpu.total_bytes - gpu.used_bytes) == (True, 6 * GiB, 6 * GiB)
    assert gpu.bandwidth_bytes_per_s == 100e9


# --- warnings ------------------------------------------------------------------------------

def _gpu(vendor: str, name: str) -> GpuInfo:
    return GpuInfo(index=0, name=name, vendor=vendor, total_bytes=8 * GiB, free_bytes=8 * GiB, used_bytes=0)


def test_gpu_without_backend_warns_loudly_with_the_reinstall_command(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    (warning,) = hardware.build_warnings([_gpu("nvidia", "NVIDIA GeForce RTX 4090")], ("CPU",))
    assert warning.startswith("GPU NOT USED") and "NVIDIA GeForce RTX 4090" in warning
    assert warning.endswith("LLAMADESK_BACKEND=cuda python3 tools/dev.py setup")


def test_warning_in_a_simulated_snapshot():
    base = hardware.load_profile("desktop-24gb")
    snapshot = replace(base, backends=("CPU",), warnings=hardware.build_warnings(base.gpus, ("CPU",)))
    assert any("LLAMADESK_BACKEND=cuda" in w for w in HardwareSnapshot.from_json(snapshot.to_json()).warnings)


@pytest.mark.parametrize("vendor,backends,expected", [
    ("nvidia", ("CUDA", "CPU"), None),
    ("nvidia", ("Vulkan", "CPU"), None),
    ("apple", ("RPC", "CPU"), "LLAMADESK_BACKEND=metal"),
    ("apple", ("MTL", "CPU"), None),
    ("amd", ("CPU",), "LLAMADESK_BACKEND=vulkan"),
    ("amd", ("ROCm", "CPU"), None),
    ("rpc", ("CPU",), "python3 tools/dev.py setup"),
    ("rpc", ("RPC", "CPU"), None),
    ("other", ("CPU",), None),
])
def test_warning_depends_on_vendor_and_build(vendor, backends, expected):
    warnings = hardware.build_warnings([_gpu(vendor, "some GPU")], backends)
    assert [expected in w for w in warnings] == ([True] if expected else [])


def test_missing_build_warns():
    (warning,) = hardware.build_warnings([], ())
    assert "tools/dev.py setup" in warning


def test_windows_reinstall_command(monkeypatch):
    monkeypatch.setattr(sys, "platform", "win32")
    assert hardware.reinstall_command("cuda") == '$env:LLAMADESK_BACKEND="cuda"; python tools\\dev.py setup'


# --- bandwidth -----------------------------------------------------------------------------

@pytest.mark.parametrize("name,gb_s", [
    ("NVIDIA H100 80GB HBM3", 3350), ("NVIDIA H100 PCIe", 2000), ("NVIDIA H200", 4800),
    ("NVIDIA A100-SXM4-80GB", 2039), ("NVIDIA A100-PCIE-40GB", 1555), ("NVIDIA A10", 600),
    ("NVIDIA GeForce RTX 4090", 1008), ("NVIDIA GeForce RTX 4060 Laptop GPU", 256),
    ("NVIDIA GeForce RTX 4060 Ti", 288), ("NVIDIA GeForce RTX 3060", 360),
    ("AMD Radeon RX 7900 XTX", 960), ("Apple M1", 68.25), ("Apple M3 Max", 400), ("Apple M4 Pro", 273),
])
def test_gpu_bandwidth_by_name(name, gb_s):
    assert bandwidth.gpu_bandwidth(name) == gb_s * 1e9


def test_unknown_gpu_has_no_bandwidth():
    assert bandwidth.gpu_bandwidth("Matrox G200eW") is None


def test_host_bandwidth_is_measured_once_and_cached(llamadesk_home, monkeypatch):
    first = bandwidth.host_bandwidth()
    assert 1e9 < first < 2e12  # between a slow laptop and a many-channel server
    cache = llamadesk_home / "cache" / bandwidth.CACHE_FILE
    assert cache.exists()

    monkeypatch.setattr(bandwidth, "measure_host_bandwidth", lambda: pytest.fail("measured again"))
    assert bandwidth.host_bandwidth() == first
    assert bandwidth.cached_host_bandwidth() == first
    assert hardware.probe().host.memory_bandwidth_bytes_per_s == first

    monkeypatch.setattr(bandwidth, "measure_host_bandwidth", lambda: 12.5e9)
    assert bandwidth.host_bandwidth(refresh=True) == 12.5e9
    assert bandwidth.host_bandwidth() == 12.5e9


def test_probe_without_measuring_does_not_measure(monkeypatch):
    monkeypatch.setattr(bandwidth, "measure_host_bandwidth", lambda: pytest.fail("measured"))
    assert hardware.probe().host.memory_bandwidth_bytes_per_s is None


def test_corrupt_bandwidth_cache_is_measured_again(llamadesk_home, monkeypatch):
    cache = llamadesk_home / "cache" / bandwidth.CACHE_FILE
    cache.parent.mkdir(parents=True)
    cache.write_text("not json")
    monkeypatch.setattr(bandwidth, "measure_host_bandwidth", lambda: 7e9)
    assert hardware.probe(measure_bandwidth=True).host.memory_bandwidth_bytes_per_s == 7e9
