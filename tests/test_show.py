"""`occprep show`: geometry of the drawn items, occupancy projection, and the PNG it writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from nuscenes.utils.data_classes import Box
from PIL import Image
from pyquaternion import Quaternion

from occprep.cli import cli
from occprep.config import occupancy_format
from occprep.pickles import dump_pickle, load_pickle
from occprep.occupancy import openocc_v1
from occprep.show import (CLASS_COLOURS, DPI, SIZE_ONE_PANEL, SIZE_TWO_PANELS, box_corners,
                          frustum, top_labels)


def test_box_corners_match_the_devkit():
    rng = np.random.default_rng(3)
    for _ in range(20):
        centre, wlh, yaw = rng.uniform(-20, 20, 3), rng.uniform(0.5, 6, 3), rng.uniform(-np.pi, np.pi)
        box = Box(centre, wlh, Quaternion(axis=[0, 0, 1], radians=yaw))
        gt_box = np.r_[centre, wlh, -yaw - np.pi / 2]
        ours = box_corners(gt_box[None])[0]
        devkit = box.bottom_corners()[:2].T
        assert np.allclose(sorted(map(tuple, ours.round(9))), sorted(map(tuple, devkit.round(9))))


def test_front_camera_frustum_looks_forward(mini_infos):
    info = load_pickle(mini_infos)["infos"][0]
    front = frustum("CAM_FRONT", info["cams"]["CAM_FRONT"])
    back = frustum("CAM_BACK", info["cams"]["CAM_BACK"])
    assert np.allclose(front.apex, info["cams"]["CAM_FRONT"]["sensor2lidar_translation"][:2])
    # LIDAR_TOP: y forward; the front camera's far edge is ahead, the back camera's behind
    assert front.corners[:, 1].min() > 20 and back.corners[:, 1].max() < -20
    # the left image edge (u = 0) is on the left (-x) for the front camera
    assert front.corners[0, 0] < 0 < front.corners[1, 0]


def test_top_labels_take_the_highest_non_free_voxel():
    rng = np.random.default_rng(0)
    free = 17
    dense = np.where(rng.random((6, 5, 4)) < 0.3, rng.integers(0, 17, (6, 5, 4)), free)
    expected = np.full((6, 5), free)
    for x in range(6):
        for y in range(5):
            occupied = [z for z in range(4) if dense[x, y, z] != free]
            if occupied:
                expected[x, y] = dense[x, y, max(occupied)]
    assert np.array_equal(top_labels(dense, free), expected)


def test_openocc_sparse_indices_are_x_fastest():
    fmt = occupancy_format("openocc-v1")
    x, y, z = 7, 120, 3
    dense = openocc_v1.dense(np.array([[z * 40000 + y * 200 + x, 4]]), fmt)
    assert dense.shape == (200, 200, 16) and dense[x, y, z] == 4
    assert (dense == fmt.free_label).sum() == dense.size - 1


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _has_colour(pixels: np.ndarray, hex_colour: str, tolerance: int = 0) -> bool:
    rgb = np.array([int(hex_colour[i: i + 2], 16) for i in (1, 3, 5)])
    return bool(np.any(np.abs(pixels.astype(int) - rgb).max(axis=-1) <= tolerance))


@pytest.fixture()
def infos_with_occupancy(mini_infos, tmp_path) -> Path:
    """The mini infos; info 0 names an OpenOcc v1 file (manmade wall), info 1 an Occ3D labels.npz."""
    data = load_pickle(mini_infos)
    wall = np.array([[z * 40000 + 150 * 200 + x, 14] for z in range(5) for x in range(60, 140)])
    np.save(tmp_path / "000_occ.npy", wall)
    data["infos"][0]["occ_gt_path"] = "000_occ.npy"
    data["infos"][1]["occ_path"] = "gts/one"
    semantics = np.full((200, 200, 16), 17, np.uint8)
    semantics[:, :, 0] = 11
    semantics[90:110, 60:70, :3] = 4
    (tmp_path / "gts" / "one").mkdir(parents=True)
    np.savez_compressed(tmp_path / "gts" / "one" / "labels.npz", semantics=semantics)
    dump_pickle(data, tmp_path / "infos.pkl")
    return tmp_path / "infos.pkl"


def test_png_with_openocc_occupancy(infos_with_occupancy, tmp_path):
    out = tmp_path / "a.png"
    result = CliRunner().invoke(cli, ["show", str(infos_with_occupancy), "--index", "0", "--out", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    pixels = _png(out)
    assert pixels.shape == (SIZE_TWO_PANELS[1] * DPI, SIZE_TWO_PANELS[0] * DPI, 3)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50
    right = pixels[:, pixels.shape[1] // 2:]
    assert _has_colour(right, CLASS_COLOURS["manmade"]) and not _has_colour(right, CLASS_COLOURS["vegetation"])


def test_png_with_occ3d_occupancy_by_token(infos_with_occupancy, tmp_path):
    token = load_pickle(infos_with_occupancy)["infos"][1]["token"]
    out = tmp_path / "b.png"
    result = CliRunner().invoke(cli, ["show", str(infos_with_occupancy), "--token", token, "--out", str(out),
                                      "--quiet"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    right = _png(out)[:, int(SIZE_TWO_PANELS[0] * DPI) // 2:]
    assert _has_colour(right, CLASS_COLOURS["driveable_surface"]) and _has_colour(right, CLASS_COLOURS["car"])


def test_png_without_occupancy(mini_infos, tmp_path):
    out = tmp_path / "c.png"
    infos = load_pickle(mini_infos)["infos"]
    index = int(np.argmax([list(info["gt_names"]).count("pedestrian") for info in infos]))
    result = CliRunner().invoke(cli, ["show", str(mini_infos), "--index", str(index - len(infos)), "--out", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    pixels = _png(out)
    assert pixels.shape == (SIZE_ONE_PANEL[1] * DPI, SIZE_ONE_PANEL[0] * DPI, 3)
    assert _has_colour(pixels, CLASS_COLOURS["car"]) and _has_colour(pixels, CLASS_COLOURS["pedestrian"], 40)


def test_real_occ3d_frame(real_occ3d_frame, tmp_path):
    labels = next(real_occ3d_frame.glob("gts/*/*/labels.npz"))
    info = {"token": labels.parent.name, "occ_gt_path": str(labels)}
    dump_pickle({"infos": [info], "metadata": {"version": "v1.0-trainval"}}, tmp_path / "one.pkl")
    out = tmp_path / "real.png"
    result = CliRunner().invoke(cli, ["show", str(tmp_path / "one.pkl"), "--index", "0", "--out", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    with np.load(labels) as npz:
        top = top_labels(npz["semantics"], 17)
    right = _png(out)[:, int(SIZE_TWO_PANELS[0] * DPI) // 2:]
    fmt = occupancy_format("occ3d")
    most_common = fmt.classes[np.bincount(top[top != 17].ravel()).argmax()]
    assert _has_colour(right, CLASS_COLOURS[most_common])


def test_bad_selection_and_missing_occupancy_write_nothing(infos_with_occupancy, mini_infos, tmp_path):
    out = tmp_path / "none.png"
    cases = [(["--token", "nope"], "--token nope: 1 sample token(s) not in the data: nope"),
             ([], "give exactly one of --token T or --index I"),
             (["--index", "0", "--token", "x"], "give exactly one"),
             (["--index", "999"], "--index 999")]
    for args, message in cases:
        result = CliRunner().invoke(cli, ["show", str(mini_infos), "--out", str(out), *args])
        assert result.exit_code != 0 and message in str(result.exception), args
    data = load_pickle(infos_with_occupancy)
    data["infos"][0]["occ_gt_path"] = "gone/000_occ.npy"
    dump_pickle(data, tmp_path / "moved.pkl")
    result = CliRunner().invoke(cli, ["show", str(tmp_path / "moved.pkl"), "--index", "0", "--out", str(out)])
    assert "gone/000_occ.npy not found" in str(result.exception) and "--data-root" in str(result.exception)
    assert not out.exists()
    result = CliRunner().invoke(cli, ["show", str(tmp_path / "moved.pkl"), "--index", "0", "--out", str(out),
                                      "--no-occupancy"])
    assert result.exit_code == 0 and _png(out).shape[1] == SIZE_ONE_PANEL[0] * DPI
