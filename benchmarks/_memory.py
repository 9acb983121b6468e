"""Peak-memory probes for benchmarks: resident set size on CPU, the caching allocator on CUDA.

On Linux the kernel keeps a per-process high-water mark of the resident set size (``VmHWM`` in
``/proc/self/status``). Writing ``"5"`` to ``/proc/self/clear_refs`` resets that mark to the
current RSS, so the peak of one stretch of code can be read without starting a new process.
Where ``clear_refs`` is not writable (non-Linux, restricted containers) the probe falls back to
``getrusage``'s ``ru_maxrss``, the peak over the whole life of the process, and says so.
"""

from __future__ import annotations

import resource
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_MIB = 1024 * 1024

METHOD_CLEAR_REFS = "vmhwm"
"""Peak RSS from ``VmHWM`` after resetting it through ``/proc/self/clear_refs``."""
METHOD_RU_MAXRSS = "ru_maxrss"
"""Peak RSS over the whole process life (``clear_refs`` not writable): an upper bound."""
METHOD_CUDA = "cuda_max_memory_allocated"
"""Peak of tensors allocated on the CUDA device (``torch.cuda.max_memory_allocated``)."""


def _status_kib(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``), or None if unreadable."""
    try:
        text = _STATUS.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return None


def current_rss_mib() -> float:
    """The resident set size of this process now, in MiB (0.0 where it cannot be read)."""
    kib = _status_kib("VmRSS")
    return 0.0 if kib is None else kib / 1024


def ru_maxrss_mib() -> float:
    """The peak resident set size over the life of this process, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / _MIB if sys.platform == "darwin" else peak / 1024


def reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark to the current RSS.

    Returns:
        True if the mark was reset (``/proc/self/clear_refs`` was writable), else False.
    """
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


@dataclass(frozen=True)
class PeakMemory:
    """Memory around one measured stretch of code.

    Attributes:
        before_mib: memory in use when the stretch started (RSS, or allocated CUDA memory).
        peak_mib: the peak during the stretch.
        method: how the peak was read (``METHOD_*`` of this module).
    """

    before_mib: float
    peak_mib: float
    method: str

    @property
    def increment_mib(self) -> float:
        """How far the peak rose above the memory in use at the start."""
        return self.peak_mib - self.before_mib


class PeakMemoryProbe:
    """Measures the peak memory of a stretch of code: call :meth:`start`, run it, call :meth:`stop`.

    Args:
        device: ``"cpu"`` measures this process's RSS; a CUDA device measures that device's
            allocated tensor memory.
    """

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self._before: float | None = None
        self._method = METHOD_CLEAR_REFS

    def start(self) -> None:
        """Reset the peak counter and record the memory in use now."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._before = torch.cuda.memory_allocated(self.device) / _MIB
            self._method = METHOD_CUDA
            return
        self._method = METHOD_CLEAR_REFS if reset_peak_rss() else METHOD_RU_MAXRSS
        self._before = current_rss_mib()

    def stop(self) -> PeakMemory:
        """The peak since :meth:`start`.

        Raises:
            RuntimeError: if :meth:`start` was not called.
        """
        if self._before is None:
            raise RuntimeError("PeakMemoryProbe.stop() called before start()")
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device) / _MIB
        elif self._method == METHOD_CLEAR_REFS:
            kib = _status_kib("VmHWM")
            peak = ru_maxrss_mib() if kib is None else kib / 1024
        else:
            peak = ru_maxrss_mib()
        return PeakMemory(before_mib=self._before, peak_mib=peak, method=self._method)
