"""The machine: a short description stored with every benchmark and report, whether the CPU computes
bf16 natively, and the rate at which it multiplies matrices of a model's own shapes (the bar that a
training step's FLOPs are measured against on a CPU)."""

from __future__ import annotations

import functools
import os
import platform
import time


def machine_info() -> dict:
    import torch

    info = {
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "native_bf16": native_bf16(),
        "date": time.strftime("%Y-%m-%d"),
    }
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            info["cpu"] = names[0]
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            info["memory_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return info


def describe(info: dict) -> str:
    gpu = info.get("gpu") or "no GPU"
    return f"{info['cpu']}, {info['cpu_count']} cores, {info.get('memory_gib', '?')} GiB, {gpu}"


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (``/proc/cpuinfo``: x86 ``flags``, Arm ``Features``); empty where unknown."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bf16() -> bool:
    """Does the CPU compute bf16 in hardware (AVX-512 BF16, AMX, Arm BF16)? Without it a bf16 matmul is
    emulated and runs far slower than fp32 (measured: ~1 GFLOP/s against ~84 on one AVX2 core)."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16", "bf16"})


def matmul_rate(shapes: list[tuple[int, int, int]], dtype=None, seconds: float = 0.5, device="cpu",
                trials: int = 5) -> float:
    """FLOP/s of this machine on the matrix products ``(m, k) @ (k, n)`` of ``shapes``, in ``dtype``
    (default float32), with torch's current thread count: every shape in turn, repeated for ``seconds``
    split into ``trials``, of which the fastest counts. On a shared or virtual machine one timing can fall
    far below what the CPU does (a neighbour's burst, a descheduled vCPU); the best of several is the
    machine's rate, the bar a training step's MFU is measured against."""
    import torch

    dtype = dtype or torch.float32
    pairs = [(torch.randn(m, k, device=device).to(dtype), torch.randn(k, n, device=device).to(dtype)) for m, k, n in shapes]
    flops_per_round = sum(2 * m * k * n for m, k, n in shapes)
    for a, b in pairs:  # warm up
        a @ b
    best = 0.0
    for _ in range(max(1, trials)):
        rounds, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / max(1, trials):
            for a, b in pairs:
                a @ b
            rounds += 1
        if device != "cpu":
            torch.cuda.synchronize()
        best = max(best, rounds * flops_per_round / (time.perf_counter() - t0))
    return best


def model_matmul_shapes(d_model: int, mlp_hidden: int, tokens: int) -> list[tuple[int, int, int]]:
    """The matrix products of one transformer layer's forward pass over ``tokens`` rows (B x L)."""
    d, h = d_model, mlp_hidden
    return [(tokens, d, 3 * d), (tokens, d, d), (tokens, d, 2 * h), (tokens, h, d)]


def idle_cores(seconds: float = 0.25) -> float:
    """How many cores were idle over the next ``seconds`` (``/proc/stat``); the CPU count where unknown."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return v[3] + (v[4] if len(v) > 4 else 0), sum(v)  # idle + iowait, total

    n = os.cpu_count() or 1
    try:
        idle0, total0 = sample()
        time.sleep(seconds)
        idle1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return float(n)
    return n * (idle1 - idle0) / max(1, total1 - total0)


def training_threads() -> int | None:
    """Torch threads for a training process: ``REASONACT_THREADS`` when set; else, unless ``OMP_NUM_THREADS``
    is set, the cores idle right now (at most torch's default). With 2 threads a step beside a busy core ran
    2.5x slower than alone, with 1 thread at its share (benchmarks/contention.py). None: leave torch alone."""
    import torch

    value = os.environ.get("REASONACT_THREADS")
    if value is not None:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"REASONACT_THREADS must be a positive integer, got {value!r}")
        return int(value)
    if "OMP_NUM_THREADS" in os.environ:
        return None
    return max(1, min(torch.get_num_threads(), int(idle_cores() + 0.5)))


def resolve_device(name=None, default: str | None = None):
    """``--device``: a torch device this machine has (default: ``default``, else cuda when present, else cpu);
    a name it does not know or a device it lacks raises ValueError saying what to pass instead."""
    import torch

    if isinstance(name, torch.device):
        return name
    if not name:
        return torch.device(default or ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"unknown --device {name!r}; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: this machine has no CUDA GPU that torch can use; pass --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {name}: reasonact runs on cpu or cuda")
    return dev
