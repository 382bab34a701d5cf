"""`occprep show`: one picture of one info: the bird's-eye view people check a sample with.

Left: the LiDAR frame seen from above (x right, y forward for nuScenes' LIDAR_TOP), with the ego
outline, the annotated boxes (oriented, coloured by class, velocity arrows) and the camera frusta.
Right, when the info names occupancy ground truth: its labels projected to the ground plane (the
top-most non-free label of each column) with a class legend.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np

from occprep import boxes
from occprep.config import OccupancyFormat, occupancy_format
from occprep.errors import OccprepError
from occprep.fileio import atomic_write
from occprep.names import check_names
from occprep.occupancy import LAYOUTS, PathLocator
from occprep.se3 import SE3
from occprep.targets import OCCUPANCY_KEYS, Target, identify

DPI = 100
SIZE_ONE_PANEL = (8.0, 7.5)
"""Figure size without occupancy, inches (800 x 750 px at DPI)."""
SIZE_TWO_PANELS = (16.0, 7.5)
"""Figure size with the occupancy panel, inches (1600 x 750 px at DPI)."""

BEV_RANGE = 50.0
"""Half-width of the bird's-eye view, m."""
FRUSTUM_DEPTH = 30.0
"""How far the camera frusta are drawn, m along the optical axis."""
EGO_OUTLINE = np.array([[-0.8, -0.87, 0.0], [3.28, -0.87, 0.0], [3.28, 0.87, 0.0], [-0.8, 0.87, 0.0]])
"""Approximate nuScenes car footprint (4.08 m x 1.73 m) in the ego frame (x forward, origin at the rear axle), m."""

CLASS_COLOURS: Dict[str, str] = {
    "car": "#ff9e00", "truck": "#ff6347", "trailer": "#ffc0a0", "bus": "#ffd700",
    "construction_vehicle": "#e9967a", "bicycle": "#dc143c", "motorcycle": "#ff3d7f", "pedestrian": "#0064ff",
    "traffic_cone": "#2f4f4f", "barrier": "#708090", "driveable_surface": "#b4b4b4", "other_flat": "#af4b4b",
    "sidewalk": "#4b004b", "terrain": "#70b450", "manmade": "#a0643c", "vegetation": "#00af00", "others": "#000000",
}
"""Colour per class name (detection names and occupancy classes share names); others are grey."""
OTHER_COLOUR = "#9a9a9a"


@dataclass(frozen=True)
class Frustum:
    """A camera's horizontal field of view in the LiDAR frame: apex and the two far corners, m."""

    channel: str
    apex: np.ndarray
    """(2,) camera centre, x and y."""
    corners: np.ndarray
    """(2, 2) left and right image-edge points at FRUSTUM_DEPTH, x and y."""


@dataclass(frozen=True)
class TopView:
    """Occupancy labels seen from above: the top-most non-free label of each column."""

    labels: np.ndarray
    """(X, Y) label ids, `fmt.free_label` where the column is empty; index [x, y]."""
    fmt: OccupancyFormat
    source: Path


def select_info(infos: Sequence[dict], token: Optional[str], index: Optional[int], path: Path) -> dict:
    """The info with sample `token`, or at position `index` (exactly one of them)."""
    if (token is None) == (index is None):
        raise OccprepError("give exactly one of --token T or --index I")
    if token is not None:
        tokens = [str(info.get("token")) for info in infos]
        check_names([token], tokens, "sample token", f"--token {token}",
                    f"{path} holds {len(infos)} infos; `occprep inspect {path}` lists what it holds")
        return infos[tokens.index(token)]
    if not infos:
        raise OccprepError(f"--index {index}: {path} holds no infos")
    if not -len(infos) <= index < len(infos):
        raise OccprepError(f"--index {index}: {path} holds {len(infos)} infos (0 to {len(infos) - 1}, or "
                           f"-{len(infos)} to -1 from the end)")
    return infos[index]


def drawable(info: dict, target: Optional[Target], data: object) -> dict:
    """`info` with what the drawing reads in the legacy layout: `gt_boxes` in the legacy convention
    (converted from the convention the boxes measurably have, else from the target's), names,
    velocities, and `cams` with sensor2lidar and intrinsics (from mmdet3d 1.x `images` and `instances`)."""
    if target is not None and target.name == "mmdet3d-v2":
        categories = (data.get("metainfo") or {}).get("categories") or {}
        labels = {label: name for name, label in categories.items() if label >= 0}
        instances = info.get("instances", [])
        info = {
            "token": info.get("token"),
            "lidar_points": info.get("lidar_points", {}),
            **{key: info[key] for key in (*OCCUPANCY_KEYS, "scene_token") if key in info},
            "gt_boxes": np.array([inst["bbox_3d"] for inst in instances], dtype=np.float64).reshape(-1, 7),
            "gt_names": [labels.get(inst["bbox_label_3d"], "other") for inst in instances],
            "gt_velocity": np.array([inst["velocity"] for inst in instances], dtype=np.float64).reshape(-1, 2),
            "cams": {name: {"sensor2lidar_rotation": lidar_from_camera.rotation,
                            "sensor2lidar_translation": lidar_from_camera.translation, "cam_intrinsic": cam["cam2img"]}
                     for name, cam in info.get("images", {}).items()
                     for lidar_from_camera in [SE3.from_matrices(cam["lidar2cam"]).inverse()]},
        }
    if "gt_boxes" not in info:
        return info
    convention = boxes.measure(*boxes.of_infos([info])) or (target.box_convention if target else "legacy")
    return {**info, "gt_boxes": boxes.convert(info["gt_boxes"], convention, "legacy")}


def box_corners(gt_boxes: np.ndarray) -> np.ndarray:
    """(N, 4, 2) footprint corners of legacy `gt_boxes` [x, y, z, w, l, h, -yaw - pi/2], LiDAR frame, m."""
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 7)
    heading = -gt_boxes[:, 6] - np.pi / 2
    half_l, half_w = gt_boxes[:, 4] / 2, gt_boxes[:, 3] / 2
    along = np.stack([np.cos(heading), np.sin(heading)], -1)
    across = np.stack([-np.sin(heading), np.cos(heading)], -1)
    signs = np.array([[1, 1], [1, -1], [-1, -1], [-1, 1]], dtype=np.float64)
    offsets = (signs[None, :, :1] * (half_l[:, None, None] * along[:, None, :])
               + signs[None, :, 1:] * (half_w[:, None, None] * across[:, None, :]))
    return gt_boxes[:, None, :2] + offsets


def frustum(channel: str, cam: dict) -> Frustum:
    """The camera's field of view from `sensor2lidar_rotation/translation` and `cam_intrinsic`.

    The image width is taken as twice the principal point's u (true for nuScenes' cameras).
    """
    lidar_from_camera = np.asarray(cam["sensor2lidar_rotation"], dtype=np.float64)
    camera_in_lidar = np.asarray(cam["sensor2lidar_translation"], dtype=np.float64)
    intrinsic = np.asarray(cam["cam_intrinsic"], dtype=np.float64)
    width, v_centre = 2 * intrinsic[0, 2], intrinsic[1, 2]
    pixels = np.array([[0.0, v_centre, 1.0], [width, v_centre, 1.0]])
    rays_camera = pixels @ np.linalg.inv(intrinsic).T * FRUSTUM_DEPTH
    corners_lidar = rays_camera @ lidar_from_camera.T + camera_in_lidar
    return Frustum(channel, camera_in_lidar[:2], corners_lidar[:, :2])


def ego_outline(info: dict) -> np.ndarray:
    """(4, 2) EGO_OUTLINE in the LiDAR frame via the inverse of lidar2ego (legacy quaternion keys, or
    mmdet3d 1.x `lidar_points.lidar2ego`), m."""
    if "lidar2ego_rotation" in info and "lidar2ego_translation" in info:
        ego_from_lidar = SE3.from_quaternions(np.asarray(info["lidar2ego_rotation"]),
                                              np.asarray(info["lidar2ego_translation"]))
    elif "lidar2ego" in (info.get("lidar_points") or {}):
        ego_from_lidar = SE3.from_matrices(info["lidar_points"]["lidar2ego"])
    else:
        return EGO_OUTLINE[:, :2]
    return ego_from_lidar.inverse().apply(EGO_OUTLINE)[:, :2]


def top_labels(dense: np.ndarray, free_label: int) -> np.ndarray:
    """(X, Y) top-most non-free label of each column of a dense (X, Y, Z) grid; free where empty."""
    occupied = dense != free_label
    top = dense.shape[2] - 1 - np.argmax(occupied[:, :, ::-1], axis=2)
    labels = np.take_along_axis(dense, top[:, :, None], axis=2)[:, :, 0]
    return np.where(occupied.any(axis=2), labels, free_label)


def load_top_view(info: dict, locator: PathLocator, occ_root: Optional[str] = None) -> Optional[TopView]:
    """The occupancy the info names, in whichever layout (`occprep.occupancy.LAYOUTS`), or None.

    OpenOccupancy infos name no path: their file is found under `occ_root`."""
    for name, layout in LAYOUTS.items():
        text = layout.named_file(info, occ_root)
        if text is None:
            continue
        found = locator.locate(text)
        if found is None:
            if name == "occ3d" and "occ_gt_path" not in info:
                return None  # BEVDet writes occ_path for every info, ground truth or not: a missing one is no error
            fix = ("pass as --occ-root the folder that holds scene_<scene token>/occupancy/" if name == "openoccupancy"
                   else "pass --data-root DIR (the folder the paths are relative to)")
            raise OccprepError(f"occupancy file {text} not found ({locator.describe()}); {fix}, or --no-occupancy")
        fmt = occupancy_format(name)
        try:
            return TopView(top_labels(layout.labels(found, fmt), fmt.free_label), fmt, Path(found))
        except (OSError, ValueError, KeyError, IndexError) as exc:
            raise OccprepError(f"{found}: not a readable {name} file ({type(exc).__name__}: {exc})") from None
    return None


def render(info: dict, top_view: Optional[TopView], title: str) -> bytes:
    """The picture as PNG bytes, SIZE_ONE_PANEL or SIZE_TWO_PANELS at DPI."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=SIZE_TWO_PANELS if top_view else SIZE_ONE_PANEL, dpi=DPI)
    width = 0.38 if top_view else 0.84
    bev = fig.add_axes([0.06, 0.08, width, 0.78])
    _draw_bev(bev, info)
    if top_view is not None:
        _draw_top_view(fig.add_axes([0.51, 0.08, width, 0.78]), top_view)
    fig.suptitle(title, fontsize=10, y=0.985)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _draw_bev(ax, info: dict) -> None:
    from matplotlib.patches import Polygon

    for cam_name, cam in (info.get("cams") or {}).items():
        if all(k in cam for k in ("sensor2lidar_rotation", "sensor2lidar_translation", "cam_intrinsic")):
            f = frustum(cam_name, cam)
            ax.add_patch(Polygon(np.vstack([f.apex, f.corners]), closed=True, facecolor="#4a90d9", alpha=0.08,
                                 edgecolor="#4a90d9", linewidth=0.8))
            label_at = f.apex + 0.85 * (f.corners.mean(axis=0) - f.apex)
            ax.text(*label_at, cam_name.replace("CAM_", ""), fontsize=7, color="#2a5a99", ha="center", va="center")
    gt_boxes = np.asarray(info.get("gt_boxes", np.zeros((0, 7))), dtype=np.float64).reshape(-1, 7)
    names = [str(n) for n in info.get("gt_names", [])]
    velocity = np.asarray(info.get("gt_velocity", np.full((len(gt_boxes), 2), np.nan)), dtype=np.float64)
    seen: Dict[str, str] = {}
    for corners, centre, name, v in zip(box_corners(gt_boxes), gt_boxes[:, :2], names, velocity.reshape(-1, 2)):
        colour = CLASS_COLOURS.get(name, OTHER_COLOUR)
        ax.add_patch(Polygon(corners, closed=True, fill=False, edgecolor=colour, linewidth=1.2,
                             label=None if name in seen else name))
        ax.plot(*np.vstack([centre, corners[:2].mean(axis=0)]).T, color=colour, linewidth=1.0)
        seen[name] = colour
        if np.all(np.isfinite(v)) and np.hypot(*v) > 0.2:
            ax.arrow(*centre, *v, color=colour, width=0.05, head_width=0.6, length_includes_head=True)
    ax.add_patch(Polygon(ego_outline(info), closed=True, facecolor="#222222", edgecolor="black", label="ego"))
    ax.set_xlim(-BEV_RANGE, BEV_RANGE)
    ax.set_ylim(-BEV_RANGE, BEV_RANGE)
    ax.set_aspect("equal")
    ax.grid(True, linewidth=0.3, alpha=0.5)
    ax.set_xlabel("x (m, LiDAR frame)")
    ax.set_ylabel("y (m)")
    ax.set_title(f"{len(gt_boxes)} boxes, {len(info.get('cams') or {})} cameras; arrows: velocity (m/s over 1 s)",
                 fontsize=9)
    if seen:
        ax.legend(loc="upper left", fontsize=7, framealpha=0.8, ncol=2)


def _draw_top_view(ax, view: TopView) -> None:
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    fmt = view.fmt
    names = list(fmt.classes) + ["free"]
    colours = [CLASS_COLOURS.get(n, OTHER_COLOUR) for n in fmt.classes] + ["#ffffff"]
    x0, y0, _, x1, y1, _ = fmt.point_cloud_range
    ax.imshow(view.labels.T, origin="lower", extent=(x0, x1, y0, y1), interpolation="nearest",
              cmap=ListedColormap(colours), vmin=-0.5, vmax=len(colours) - 0.5)
    present = sorted(set(np.unique(view.labels).tolist()) - {fmt.free_label})
    ax.legend(handles=[Patch(color=colours[i], label=names[i]) for i in present], loc="center left",
              bbox_to_anchor=(1.01, 0.5), fontsize=7, frameon=False)
    ax.set_aspect("equal")
    ax.set_xlabel(f"x (m, {fmt.frame} frame)")
    ax.set_ylabel("y (m)")
    ax.set_title(f"{fmt.name} occupancy, top-most label per column\n{view.source.name}", fontsize=9)


def write_png(png: bytes, path: Path) -> None:
    """Write the picture atomically."""
    with atomic_write(path) as handle:
        handle.write(png)


def describe(info: dict, path: Path) -> str:
    """The figure title: pickle, token, scene and time."""
    parts = [f"token {info.get('token', '?')}"]
    if "scene_name" in info:
        parts.append(str(info["scene_name"]))
    if "timestamp" in info:
        parts.append(f"t = {info['timestamp']} µs")
    return f"{path.name}\n" + "  |  ".join(parts)


@dataclass(frozen=True)
class Shown:
    """What `show_sample` drew: the picture's path, the sample token and the occupancy file, if any."""

    out: Path
    token: str
    occupancy: Optional[Path]


def show_sample(pkl: Path, token: Optional[str], index: Optional[int], out: Path,
                data_root: Optional[Path] = None, occupancy: bool = True, occ_root: Optional[str] = None) -> Shown:
    """Draw the info of `pkl` with sample `token` (or at `index`) into the PNG `out`.

    Relative occupancy paths are looked up from the current directory, then from `data_root`
    (default: the pickle's folder) and its parents. `occ_root`: the nuScenes-Occupancy folder, for
    OpenOccupancy infos (which name no path).
    """
    from occprep.inspection import unwrap_infos
    from occprep.pickles import load_pickle

    if Path(out).suffix.lower() != ".png":
        raise OccprepError(f"--out {out}: show writes PNG pictures; give a file name ending in .png")
    data = load_pickle(pkl)
    _, infos, _ = unwrap_infos(pkl, data)
    info = drawable(select_info(infos, token, index, pkl), identify(data, pkl.name), data)
    top_view = load_top_view(info, PathLocator(data_root or pkl.parent), occ_root) if occupancy else None
    write_png(render(info, top_view, describe(info, pkl)), out)
    return Shown(out, str(info.get("token")), top_view.source if top_view else None)
