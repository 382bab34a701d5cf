"""CAN bus slots (reference and nearest-before rules), the CAN bus reader, and split plans."""

import json

import numpy as np
import pytest

import devkit_oracle as oracle
from occprep.canbus import can_bus_slots, poses_from_messages, read_can_bus
from occprep.config import dataset_config
from occprep.errors import OccprepError
from occprep.records import CanBus
from occprep.reporting import Reporter
from occprep.splits import devkit_scene_lists, official_plan, plan_from_file


def messages(utimes):
    """Pose messages as the files hold them, with distinct values per message."""
    return [{"accel": [i, 1.0 + i, 2.0], "orientation": [1.0, 0.0, 0.0, 0.1 * i], "pos": [10.0 * i, 5.0, 0.0],
             "rotation_rate": [0.0, 0.5 * i, 0.0], "utime": t, "vel": [3.0 + i, 0.0, 0.0]} for i, t in enumerate(utimes)]


class _Message:
    def __init__(self, fields):
        self.__dict__.update(fields)


@pytest.mark.parametrize("mode", ["reference", "nearest-before"])
def test_slots_follow_the_rule_at_every_edge(mode):
    raw = messages([100, 200, 200, 300, 400])
    poses = poses_from_messages([_Message(m) for m in raw])
    times = np.array([50, 100, 150, 200, 250, 399, 400, 401, 10_000])
    slots = can_bus_slots(times, ["scene-0001"] * len(times), CanBus({"scene-0001": poses}, {}), mode)
    assert slots.dtype == np.float64 and slots.shape == (len(times), 18)
    for row, t in enumerate(times.tolist()):
        np.testing.assert_array_equal(slots[row], oracle.can_bus_slots(raw, t, mode))


def test_reference_and_nearest_before_differ_only_in_slots_7_to_15():
    poses = poses_from_messages([_Message(m) for m in messages([100, 200, 300])])
    source = CanBus({"scene-0001": poses}, {})
    reference = can_bus_slots(np.array([150]), ["scene-0001"], source, "reference")[0]
    before = can_bus_slots(np.array([150]), ["scene-0001"], source, "nearest-before")[0]
    np.testing.assert_array_equal(reference[:7], before[:7])
    assert reference[13] == 4.0 and before[13] == 3.0  # vel.x of the message after vs before
    assert not reference[16:].any()


def test_scene_without_poses_gets_zeros_and_unknown_mode_is_refused():
    slots = can_bus_slots(np.array([1, 2]), ["scene-0002", "scene-0002"], CanBus({}, {"scene-0002": "x"}))
    assert not slots.any()
    with pytest.raises(OccprepError, match="--can-bus-mode 'after'"):
        can_bus_slots(np.array([1]), ["scene-0002"], CanBus({}, {}), "after")


def test_reader_names_every_scene_without_data(tmp_path):
    folder = tmp_path / "can_bus"
    folder.mkdir()
    for name in ("scene-0001", "scene-0161"):
        (folder / f"{name}_pose.json").write_text(json.dumps(messages([1, 2])))
    (folder / "scene-0003_pose.json").write_text("[]")
    (folder / "scene-0004_pose.json").write_text('[{"utime": 1}]')
    names = ["scene-0001", "scene-0161", "scene-0002", "scene-0003", "scene-0004"]
    can_bus = read_can_bus(tmp_path, names, dataset_config(), Reporter("t", quiet=True))
    assert list(can_bus.poses) == ["scene-0001"]
    np.testing.assert_array_equal(can_bus.poses["scene-0001"].utime, [1, 2])
    assert can_bus.missing["scene-0161"] == "no CAN bus data for this scene (dataset blacklist)"
    assert can_bus.missing["scene-0002"] == "no file can_bus/scene-0002_pose.json"
    assert can_bus.missing["scene-0003"] == "can_bus/scene-0003_pose.json has no messages"
    assert can_bus.missing["scene-0004"].startswith("unreadable: ") and "scene-0004_pose.json" in can_bus.missing["scene-0004"]
    with pytest.raises(OccprepError, match="CAN bus folder not found"):
        read_can_bus(tmp_path / "nowhere", names, dataset_config(), Reporter("t", quiet=True))


def test_official_lists_are_the_devkits():
    from nuscenes.utils import splits

    lists = devkit_scene_lists()
    for name, scenes in splits.create_splits_scenes().items():
        assert lists[name] == scenes
    mini = official_plan("v1.0-mini")
    assert mini.outputs == ("train", "val") and mini.fallback == "val"
    assert mini.assign(["scene-0061", "scene-0103", "scene-9999"]) == (["train", "val", "val"], ["scene-9999"])
    test = official_plan("v1.0-test")
    assert test.outputs == ("test",) and test.assign(["scene-0077", "scene-0001"])[0] == ["test", "test"]


def test_splits_file_is_validated(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"train": ["a"], "val": ["a"]}))
    with pytest.raises(OccprepError, match="scene 'a' is in both 'train' and 'val'"):
        plan_from_file(path)
    path.write_text(json.dumps({"../x": ["a"]}))
    with pytest.raises(OccprepError, match="not usable in a file name"):
        plan_from_file(path)
    path.write_text(json.dumps({"train": "a"}))
    with pytest.raises(OccprepError, match="s.json: unexpected content"):
        plan_from_file(path)


def test_the_real_steering_and_pose_files_read_as_the_devkit_reads_them():
    """Real scene-0103 CAN bus files (all message types): steering and pose columns equal the devkit's
    messages, and the nearest message to any time is VAD's (nearest, a tie to the later)."""
    from nuscenes.can_bus.can_bus_api import NuScenesCanBus

    from conftest import real_data
    from occprep.canbus import nearest_message

    root = real_data("nuscenes-can-bus-scene-0103")
    can_bus = read_can_bus(root, ["scene-0103"], dataset_config(), Reporter("test", quiet=True), steering=True)
    devkit = NuScenesCanBus(dataroot=str(root))
    steering = devkit.get_messages("scene-0103", "steeranglefeedback")
    assert can_bus.steering["scene-0103"].utime.tolist() == [m["utime"] for m in steering]
    assert can_bus.steering["scene-0103"].value.tolist() == [m["value"] for m in steering]
    poses = devkit.get_messages("scene-0103", "pose")
    np.testing.assert_array_equal(can_bus.poses["scene-0103"].vel, [m["vel"] for m in poses])
    utime = can_bus.steering["scene-0103"].utime
    times = np.concatenate([utime[:50], (utime[:-1] + utime[1:])[:50] // 2, (utime[:-1] + utime[1:])[:50] // 2 + 1,
                            [utime[0] - 10**6, utime[-1] + 10**6]])
    expected = [min(range(len(utime)), key=lambda i: (abs(int(utime[i]) - int(t)), -i)) for t in times]
    assert nearest_message(utime, times).tolist() == expected


def test_steering_files_missing_are_reasons_not_zeros(tmp_path):
    (tmp_path / "can_bus").mkdir()
    (tmp_path / "can_bus" / "scene-0001_pose.json").write_text(json.dumps(messages([100, 200])))
    (tmp_path / "can_bus" / "scene-0002_steeranglefeedback.json").write_text("[]")
    can_bus = read_can_bus(tmp_path, ["scene-0001", "scene-0002", "scene-0161"], dataset_config(),
                           Reporter("test", quiet=True), steering=True)
    assert can_bus.steering == {} and list(can_bus.poses) == ["scene-0001"]
    assert can_bus.steering_missing == {"scene-0001": "no file can_bus/scene-0001_steeranglefeedback.json",
                                        "scene-0002": "can_bus/scene-0002_steeranglefeedback.json has no messages",
                                        "scene-0161": "no CAN bus data for this scene (dataset blacklist)"}


def test_poses_are_the_messages_columns_in_file_order():
    raw = messages([300, 100, 200])
    poses = poses_from_messages([_Message(m) for m in raw])
    assert poses.utime.tolist() == [300, 100, 200]
    for name in ("pos", "orientation", "accel", "rotation_rate", "vel"):
        column = getattr(poses, name)
        assert column.flags.c_contiguous and column.dtype == np.float64
        np.testing.assert_array_equal(column, [m[name] for m in raw])


def test_can_bus_read_in_parts_and_merged_equals_one_read(tmp_path):
    from occprep.canbus import merged_can_bus

    folder = tmp_path / "can_bus"
    folder.mkdir()
    names = [f"scene-{n:04d}" for n in (1, 2, 3, 5)]
    for number, name in enumerate(names[:3]):
        (folder / f"{name}_pose.json").write_text(json.dumps(messages([100 * number + 1, 100 * number + 2])))
    config, quiet = dataset_config("nuscenes"), Reporter("test", quiet=True)
    whole = read_can_bus(tmp_path, names, config, quiet)
    parts = merged_can_bus([read_can_bus(tmp_path, part, config, quiet) for part in (names[2:], names[:1], names[1:2])])
    assert list(parts.poses) == list(whole.poses) == names[:3] and parts.missing == whole.missing
    assert list(parts.missing) == ["scene-0005"]
    for name in names[:3]:
        np.testing.assert_array_equal(parts.poses[name].vel, whole.poses[name].vel)
