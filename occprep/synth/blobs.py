"""Sensor files at every sample_data filename: zero-byte placeholders or tiny loadable ones.

`tiny`: cameras get a uniform grey JPEG of the camera's size (1600x900), LiDAR a `.pcd.bin` of
float32 (N, 5) points (x, y, z, intensity, ring) on a ring around the sensor, radar a PCD v0.7
binary file with the 18 nuScenes radar fields, as the devkit's point cloud readers expect.
"""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path
from typing import Iterable

import numpy as np

from occprep.tables import SampleData

BLOB_MODES = ("none", "empty", "tiny")

RADAR_FIELDS = ("x y z dyn_prop id rcs vx vy vx_comp vy_comp is_quality_valid ambig_state x_rms y_rms "
                "invalid_state pdh0 vx_rms vy_rms").split()
RADAR_SIZES = (4, 4, 4, 1, 2, 4, 4, 4, 4, 4, 1, 1, 1, 1, 1, 1, 1, 1)
RADAR_TYPES = "F F F I I F F F F F I I I I I I I I".split()


@lru_cache(maxsize=None)
def _jpeg(width: int, height: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (128, 128, 128)).save(buffer, format="JPEG", quality=50)
    return buffer.getvalue()


@lru_cache(maxsize=None)
def _lidar_points() -> bytes:
    angle = np.linspace(-np.pi, np.pi, 64, endpoint=False)
    ring = np.arange(4)
    a, r = np.meshgrid(angle, ring, indexing="ij")
    radius = 5.0 + 2.0 * r
    points = np.stack([radius * np.cos(a), radius * np.sin(a), np.full_like(a, -1.8), np.full_like(a, 10.0), r], -1)
    return points.reshape(-1, 5).astype(np.float32).tobytes()


@lru_cache(maxsize=None)
def _radar_pcd() -> bytes:
    count = 4
    dtype = np.dtype([(name, f"<{'f' if t == 'F' else ('u' if size == 1 else 'i')}{size}")
                      for name, size, t in zip(RADAR_FIELDS, RADAR_SIZES, RADAR_TYPES)])
    points = np.zeros(count, dtype=dtype)
    points["x"] = np.arange(count) * 5.0 + 10.0
    points["invalid_state"] = 0
    points["ambig_state"] = 3
    header = ("# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\n"
              f"FIELDS {' '.join(RADAR_FIELDS)}\nSIZE {' '.join(map(str, RADAR_SIZES))}\n"
              f"TYPE {' '.join(RADAR_TYPES)}\nCOUNT {' '.join(['1'] * len(RADAR_FIELDS))}\n"
              f"WIDTH {count}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {count}\nDATA binary\n")
    # One trailing byte: the devkit's reader requires data beyond the last field of the last point.
    return header.encode() + points.tobytes() + b"\n"


def blob_bytes(record: SampleData, mode: str) -> bytes:
    """The file content for `record` under `mode` ('empty' or 'tiny')."""
    if mode == "empty":
        return b""
    if record.fileformat == "jpg":
        return _jpeg(record.width, record.height)
    return _lidar_points() if record.filename.endswith(".bin") else _radar_pcd()


def write_blobs(dataroot: Path, records: Iterable[SampleData], mode: str) -> int:
    """Write a file per record under `dataroot` (nothing for mode 'none'); returns how many."""
    if mode == "none":
        return 0
    count = 0
    made = set()
    for record in records:
        path = dataroot / record.filename
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        path.write_bytes(blob_bytes(record, mode))
        count += 1
    return count
