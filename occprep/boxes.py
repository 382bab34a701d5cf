"""The 7-number box conventions in circulation, converting between them, and telling them apart.

| convention | numbers | yaw | written by |
|---|---|---|---|
| `legacy` | x, y, z, w, l, h, yaw' | yaw' = -yaw - π/2 | mmdet3d < 1.0 (BEVFormer, OccNet, UniAD v1, VAD) |
| `rc` | x, y, z, l, w, h, yaw | yaw | mmdet3d >= 1.0rc0 and 1.x (BEVDet/FlashOcc, StreamPETR, SparseBEV) |

x, y, z is the box centre (m) in the frame the boxes are given in; `yaw` is the nuScenes heading
in that frame (pyquaternion `yaw_pitch_roll[0]` of the box orientation moved into the frame, as
nuScenes-devkit's `Box` gives it: the angle of the box's length axis from +x, counter-clockwise).
The map between the two conventions swaps the first two sizes and sends yaw to -yaw - π/2; it is
its own inverse. A pickle of one convention fed to a consumer of the other trains on wrong boxes
with no error, so every output states its convention and `measure` recognises it from the boxes.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

CONVENTIONS = ("legacy", "rc")

ELONGATED = ("car", "truck", "bus", "trailer", "construction_vehicle", "bicycle", "motorcycle",
             "vehicle.car", "vehicle.truck", "vehicle.bus.rigid", "vehicle.bus.bendy", "vehicle.trailer",
             "vehicle.construction", "vehicle.bicycle", "vehicle.motorcycle")
"""Classes whose boxes are longer than wide, by which `measure` tells the conventions apart."""


def make(centre: np.ndarray, wlh: np.ndarray, yaw: np.ndarray, convention: str) -> np.ndarray:
    """(N, 7) float64 boxes from centres (N, 3), nuScenes sizes (N, 3) in (w, l, h) order, m, and
    headings (N,), rad, all in one frame."""
    if convention == "legacy":
        return np.concatenate([centre, wlh, -yaw[:, None] - np.pi / 2], axis=1)
    if convention == "rc":
        return np.concatenate([centre, wlh[:, [1, 0, 2]], yaw[:, None]], axis=1)
    raise ValueError(f"unknown box convention {convention!r}; one of {', '.join(CONVENTIONS)}")


def convert(boxes: np.ndarray, source: str, target: str) -> np.ndarray:
    """(N, 7+) boxes of convention `source` in convention `target` (columns after the 7th kept)."""
    for name in (source, target):
        if name not in CONVENTIONS:
            raise ValueError(f"unknown box convention {name!r}; one of {', '.join(CONVENTIONS)}")
    boxes = np.asarray(boxes, dtype=np.float64)
    if source == target:
        return boxes.copy()
    out = boxes.copy()
    out[:, [3, 4]] = boxes[:, [4, 3]]
    out[:, 6] = -boxes[:, 6] - np.pi / 2
    return out


def long_first_share(boxes: np.ndarray, names: Sequence[str]) -> Optional[float]:
    """Share of the elongated-class boxes (cars, trucks, ...) whose first size is the larger one:
    near 1 for `rc`, near 0 for `legacy`; None when there is no such box."""
    elongated = np.isin(np.asarray(names, dtype=str), ELONGATED)
    if not elongated.any():
        return None
    sizes = np.asarray(boxes, dtype=np.float64)[elongated, 3:5]
    return float(np.mean(sizes[:, 0] > sizes[:, 1]))


def measure(boxes: np.ndarray, names: Sequence[str]) -> Optional[str]:
    """The convention the boxes show ('rc' or 'legacy'), or None when they do not tell."""
    share = long_first_share(boxes, names)
    if share is None or 0.2 < share < 0.8:
        return None
    return "rc" if share >= 0.8 else "legacy"


def of_infos(infos: Sequence[dict]) -> Tuple[np.ndarray, List[str]]:
    """All `gt_boxes` rows of legacy infos that have `gt_names` too, and those names (for `measure`)."""
    labelled = [info for info in infos if "gt_boxes" in info and "gt_names" in info]
    rows = [np.asarray(info["gt_boxes"], dtype=np.float64).reshape(-1, 7) for info in labelled]
    names = [str(name) for info in labelled for name in info["gt_names"]]
    return (np.concatenate(rows) if rows else np.zeros((0, 7))), names
