"""GPU placement arithmetic of local workers: the GPUs this process may use (gpu_devices), how many requests fit
(fits, also Ray's), each worker's CUDA_VISIBLE_DEVICES (gpu_assignment) and the default number of local workers.
"""

from __future__ import annotations

import itertools
import math
import os
import subprocess

from lrnoise.errors import LrnoiseError


def gpu_devices() -> list[str]:
    """The GPUs this process may use, as CUDA names them: CUDA_VISIBLE_DEVICES's list when it is set (ids or
    UUIDs, in the user's order; empty: none), else every GPU nvidia-smi lists (0 .. n-1)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:  # CUDA stops at the first invalid id: "-1" (TensorFlow's idiom) means none
        ids = [d.strip() for d in visible.split(",") if d.strip()]
        return list(itertools.takewhile(lambda d: not d.startswith("-"), ids))
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, row in enumerate(r for r in out.splitlines() if r.startswith("GPU "))]


def fits(have: float, need: float) -> float:
    """How many requests of `need` fit in `have` (0.2 GPUs each: 5 per GPU, where float floor division says 4);
    any number when nothing is needed."""
    return math.floor(have / need + 1e-9) if need else math.inf


def gpus_each(devices: list[str], gpus_per_training: float | None) -> float:
    """A training's GPUs: the user's --gpus-per-training, else 1 where there are GPUs and 0 where there are none."""
    return gpus_per_training if gpus_per_training is not None else (1.0 if devices else 0.0)


def gpu_assignment(workers: int, devices: list[str], gpus_per_training: float | None) -> list[str]:
    """CUDA_VISIBLE_DEVICES of each of `workers` local worker processes ('' = no GPU), from the user's `devices`
    in their order: k >= 1 GPUs per training gives each worker its own k; a fraction 1/k lets k workers share
    one GPU; 0 (or no GPU) gives none. More workers than the GPUs allow is refused, not silently shared."""
    per = gpus_each(devices, gpus_per_training)
    if per == 0:
        return [""] * workers
    share = round(1 / per) if per < 1 else 1  # workers per GPU
    each = max(1, int(per))  # GPUs per worker
    room = fits(len(devices), per)
    if not devices:
        raise LrnoiseError(f"--gpus-per-training {per:g} asks for GPUs, but none is visible: 0 trains on the CPU")
    if workers > room:
        listed = ",".join(devices)
        share_hint = ", or --gpus-per-training 0.5 to let two trainings share a GPU" if per >= 1 else ""
        raise LrnoiseError(
            f"{workers} workers at {per:g} GPUs per training need {math.ceil(workers * each / share)} GPUs; "
            f"CUDA_VISIBLE_DEVICES gives {len(devices)} ({listed}): use --workers {max(1, room)}{share_hint}"
        )
    return [",".join(devices[(slot // share) * each : (slot // share + 1) * each]) for slot in range(workers)]


def default_local_workers(preset_workers: int, gpus_per_training: float | None) -> int:
    """Local workers when --workers is not given: one per GPU share where there are GPUs (no GPU left idle),
    else the preset's measured choice, at most one per CPU core."""
    devices = gpu_devices()
    per = gpus_each(devices, gpus_per_training)
    if devices and per > 0:
        return max(1, fits(len(devices), per))
    return max(1, min(preset_workers, os.cpu_count() or 1))
