"""Chains walked for all rows at once: an instance's later annotations (`sample_annotation.next`) and
a scene's later or earlier samples (`sample.next`/`prev`), and the nuScenes-devkit prediction futures
built on them. The end-to-end driving targets (`occprep.targets.uniad`, `occprep.targets.vad`) take
their futures and histories from here; the references walk these chains record by record.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from occprep.geometry import heading
from occprep.records import Scan, remap_rows

MICROSECONDS_PER_SECOND = 1e6
PREDICTION_BUFFER = 0.15
"""Seconds the devkit's `PredictHelper` adds to the horizon (nuScenes-devkit 1.1 `prediction/helper.py`)."""


def follow(links: np.ndarray, start: np.ndarray, steps: int) -> np.ndarray:
    """(M, steps) int64: the rows reached from each of `start` (M,) by following `links` (N,) int64 (the
    next row, -1 for none) 1 to `steps` times; -1 once the chain has ended."""
    rows = np.full((len(start), steps), -1, dtype=np.int64)
    current = np.asarray(start, dtype=np.int64)
    for k in range(steps):
        current = remap_rows(current, links)
        rows[:, k] = current
    return rows


def agent_futures(scan: Scan, seconds: float) -> Tuple[np.ndarray, np.ndarray]:
    """Every box's future positions as nuScenes-devkit `PredictHelper.get_future_for_agent(instance, sample,
    seconds, in_agent_frame=True)` gives them: the instance's next annotations while less than `seconds`
    + 0.15 s after the box's sample, at most 2 per second, their global xy in the box's own frame (its
    heading along +y). Returns ((A, n, 2) float64 positions, zero after the last, and (A, n) bool validity),
    n = int(2 * seconds)."""
    steps = int(2 * seconds)
    boxes = scan.annotations
    times = scan.keyframes.timestamp[scan.keyframes.of_boxes()]
    horizon = seconds + PREDICTION_BUFFER
    yaw = heading(boxes.rotation)
    angle = np.pi / 2 + np.sign(-yaw) * np.abs(yaw)
    cos, sin = np.cos(angle), np.sin(angle)
    chain = follow(boxes.next, np.arange(len(times)), steps)
    positions = np.zeros((len(times), steps, 2))
    valid = np.zeros((len(times), steps), dtype=bool)
    going = np.ones(len(times), dtype=bool)
    for k in range(steps):
        # The devkit keeps an annotation less than the horizon after the start and stops after the
        # first one beyond it (times only grow along a track).
        later = np.maximum(chain[:, k], 0)
        going &= chain[:, k] >= 0
        elapsed = np.abs(times[later] - times) / MICROSECONDS_PER_SECOND
        valid[:, k] = going & (elapsed < horizon)
        dx = boxes.translation[later, 0] - boxes.translation[:, 0]
        dy = boxes.translation[later, 1] - boxes.translation[:, 1]
        positions[:, k, 0] = np.where(valid[:, k], cos * dx - sin * dy, 0.0)
        positions[:, k, 1] = np.where(valid[:, k], sin * dx + cos * dy, 0.0)
        going &= elapsed <= horizon
    return positions, valid
