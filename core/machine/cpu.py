"""The host CPU's name, read from the operating system (for display and as the bandwidth cache's key)."""
from __future__ import annotations

import functools
import platform
import subprocess
from pathlib import Path


def sysctl(key: str) -> str | None:
    """A macOS/BSD sysctl value as text, or None when unknown."""
    try:
        result = subprocess.run(["sysctl", "-n", key], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    value = result.stdout.strip()
    return value if result.returncode == 0 and value else None


def _linux_cpu_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    try:
        lines = cpuinfo.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for label in ("model name", "Hardware", "Model", "cpu model"):
        for line in lines:
            key, _, value = line.partition(":")
            if key.strip() == label and value.strip():
                return value.strip()
    return None


def _windows_cpu_name() -> str | None:
    try:
        import winreg

        key = winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"HARDWARE\DESCRIPTION\System\CentralProcessor\0")
        return str(winreg.QueryValueEx(key, "ProcessorNameString")[0]).strip() or None
    except OSError:
        return None


@functools.lru_cache(maxsize=1)
def cpu_name() -> str:
    """The CPU's marketing name, e.g. 'AMD Ryzen 9 7950X 16-Core Processor' or 'Apple M2 Pro'."""
    system = platform.system()
    if system == "Linux":
        name = _linux_cpu_name()
    elif system == "Darwin":
        name = sysctl("machdep.cpu.brand_string")
    elif system == "Windows":
        name = _windows_cpu_name()
    else:
        name = None
    return name or platform.processor() or platform.machine() or "unknown CPU"
