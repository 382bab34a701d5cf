"""The synthetic world of one scene: the ego trajectory, the tracked agents and the static background.

Everything lives on flat ground at global z = 0; the ego frame's origin is on the ground, so ego
poses have z = 0, no roll and no pitch, like the real ego_pose table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np

from occprep.synth.spec import SynthSpec

TRACK_STEP_US = 10_000
"""The ego trajectory is integrated at 100 Hz and interpolated linearly in between."""


@dataclass(frozen=True)
class EgoTrack:
    """Ego motion sampled every TRACK_STEP_US: all arrays (T,), global frame, SI units."""

    time_us: np.ndarray
    x: np.ndarray
    """m, global frame."""
    y: np.ndarray
    yaw: np.ndarray
    """Heading, rad, counter-clockwise from global x."""
    speed: np.ndarray
    """Forward speed, m/s (the ego never reverses or slips sideways)."""
    yaw_rate: np.ndarray
    """rad/s."""
    accel: np.ndarray
    """Longitudinal acceleration, m/s²."""

    def pose_at(self, time_us: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Ego position (n, 2), m, and heading (n,), rad, at `time_us` (µs)."""
        t = np.asarray(time_us, dtype=np.float64)
        xy = np.stack([np.interp(t, self.time_us, self.x), np.interp(t, self.time_us, self.y)], axis=1)
        return xy, np.interp(t, self.time_us, np.unwrap(self.yaw))


def make_ego_track(rng: np.random.Generator, start_us: int, end_us: int) -> EgoTrack:
    """A smooth drive covering [start_us - 0.5 s, end_us + 0.5 s]: speed and yaw rate are slow sinusoids."""
    time_us = np.arange(start_us - 500_000, end_us + 500_000 + TRACK_STEP_US, TRACK_STEP_US, dtype=np.int64)
    t = (time_us - time_us[0]) * 1e-6
    base, swing = rng.uniform(2.0, 10.0), rng.uniform(0.0, 3.0)
    swing = min(swing, base)
    period, phase = rng.uniform(10.0, 40.0), rng.uniform(0.0, 2 * np.pi)
    speed = base + swing * np.sin(2 * np.pi * t / period + phase)
    accel = swing * 2 * np.pi / period * np.cos(2 * np.pi * t / period + phase)
    turn, turn_period, turn_phase = rng.uniform(0.0, 0.15), rng.uniform(10.0, 40.0), rng.uniform(0.0, 2 * np.pi)
    yaw_rate = turn * np.sin(2 * np.pi * t / turn_period + turn_phase)
    yaw = rng.uniform(-np.pi, np.pi) + _integrate(yaw_rate, t)
    x = rng.uniform(300.0, 1500.0) + _integrate(speed * np.cos(yaw), t)
    y = rng.uniform(600.0, 1800.0) + _integrate(speed * np.sin(yaw), t)
    yaw = (yaw + np.pi) % (2 * np.pi) - np.pi
    return EgoTrack(time_us, x, y, yaw, speed, yaw_rate, accel)


def _integrate(rate: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Cumulative trapezoid integral of `rate` over `t`, starting at 0."""
    out = np.zeros_like(rate)
    out[1:] = np.cumsum(0.5 * (rate[1:] + rate[:-1]) * np.diff(t))
    return out


@dataclass(frozen=True)
class Agents:
    """Tracked objects of one scene, one row per instance; constant velocity on the ground."""

    category: np.ndarray
    """(n,) index into SynthSpec.categories."""
    attribute: np.ndarray
    """(n,) index into SynthSpec.attributes, -1 for none."""
    size: np.ndarray
    """(n, 3) width, length, height, m."""
    first: np.ndarray
    """(n,) index of the first sample the instance is annotated in."""
    last: np.ndarray
    """(n,) index of the last one (inclusive)."""
    anchor_us: np.ndarray
    """(n,) time of `anchor_xy`, µs."""
    anchor_xy: np.ndarray
    """(n, 2) box centre at `anchor_us`, m, global frame."""
    yaw: np.ndarray
    """(n,) heading, rad, global frame."""
    velocity: np.ndarray
    """(n, 2) m/s, global frame."""

    def __len__(self) -> int:
        return len(self.category)

    def centre_at(self, index: np.ndarray, time_us: np.ndarray) -> np.ndarray:
        """Box centres (m, global frame, z = half height) of instances `index` at `time_us`."""
        dt = (np.asarray(time_us) - self.anchor_us[index]) * 1e-6
        xy = self.anchor_xy[index] + self.velocity[index] * dt[:, None]
        return np.column_stack([xy, self.size[index, 2] / 2])


def make_agents(rng: np.random.Generator, spec: SynthSpec, ego: EgoTrack, sample_us: np.ndarray) -> Agents:
    """About `spec.annotations_per_sample` agents per sample, tracked over random spans of samples."""
    n_samples = len(sample_us)
    shortest = min(n_samples, 3)
    count = max(1, round(spec.annotations_per_sample * n_samples / ((shortest + n_samples) / 2)))
    length = rng.integers(shortest, n_samples + 1, size=count)
    first = rng.integers(0, n_samples - length + 1)
    last = first + length - 1

    weights = np.array([c.count for c in spec.categories], dtype=np.float64)
    category = rng.choice(len(weights), size=count, p=weights / weights.sum())
    mean_size = np.array([spec.categories[c].size for c in category])
    size = np.round(mean_size * rng.uniform(0.9, 1.1, size=(count, 3)), 3)

    attribute_index = {a.name: i for i, a in enumerate(spec.attributes)}
    attribute = np.full(count, -1)
    velocity = np.zeros((count, 2))
    anchor_us = sample_us[(first + last) // 2]
    ego_xy, ego_yaw = ego.pose_at(anchor_us)
    heading = rng.uniform(-np.pi, np.pi, size=count)
    for i, c in enumerate(category):
        behaviour = spec.behaviours[spec.categories[c].behaviour]
        if behaviour.follows_road:
            heading[i] = ego_yaw[i] + rng.choice([0.0, np.pi]) + rng.normal(0.0, 0.05)
        if behaviour.attributes:
            names = list(behaviour.attributes)
            p = np.array(list(behaviour.attributes.values()))
            name = names[int(rng.choice(len(names), p=p / p.sum()))]
            attribute[i] = attribute_index[name]
            if name == behaviour.moving_attribute:
                velocity[i] = rng.uniform(*behaviour.speed) * np.array([np.cos(heading[i]), np.sin(heading[i])])
    radius = rng.uniform(*spec.agent_radius_m, size=count)
    bearing = rng.uniform(-np.pi, np.pi, size=count)
    anchor_xy = ego_xy + radius[:, None] * np.column_stack([np.cos(bearing), np.sin(bearing)])
    return Agents(category, attribute, size, first, last, anchor_us, anchor_xy, heading, velocity)


@dataclass(frozen=True)
class Background:
    """Static blocks (buildings, vegetation) along the route: rows of centre, size, yaw, class."""

    centre: np.ndarray
    """(n, 3) m, global frame."""
    size: np.ndarray
    """(n, 3) width, length, height, m."""
    yaw: np.ndarray
    """(n,) rad, global frame."""
    label: np.ndarray
    """(n,) index into SynthSpec.background.classes."""


def make_background(rng: np.random.Generator, spec: SynthSpec, ego: EgoTrack) -> Background:
    """One block per side of the route every `background.spacing_m` of driven distance."""
    cfg = spec.background
    distance = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(ego.x), np.diff(ego.y)))])
    marks = np.arange(-50.0, distance[-1] + 50.0, cfg.spacing_m)
    # Extend the route straight beyond its ends so the first and last frames are lined too.
    along = np.clip(marks, 0.0, distance[-1])
    x, y, yaw = (np.interp(along, distance, a) for a in (ego.x, ego.y, np.unwrap(ego.yaw)))
    x, y = x + (marks - along) * np.cos(yaw), y + (marks - along) * np.sin(yaw)
    n = len(marks)
    side = np.repeat([[1.0, -1.0]], n, axis=0).ravel()
    x, y, yaw = np.repeat(x, 2), np.repeat(y, 2), np.repeat(yaw, 2)
    lateral = side * rng.uniform(*cfg.lateral_m, size=2 * n)
    size = np.column_stack([rng.uniform(*cfg.size_m, size=(2 * n, 2)), rng.uniform(*cfg.height_m, size=2 * n)])
    centre = np.column_stack([x - lateral * np.sin(yaw), y + lateral * np.cos(yaw), size[:, 2] / 2])
    label = rng.integers(0, len(cfg.classes), size=2 * n)
    return Background(centre, np.round(size, 3), yaw, label)
