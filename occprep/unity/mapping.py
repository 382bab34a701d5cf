"""How a Unity dataset's names become nuScenes names: `configs/unity-*.json` as a typed record."""

from __future__ import annotations

from typing import Collection, Dict, Iterable, Tuple

import msgspec

from occprep.config import dataset_config, load_config
from occprep.errors import OccprepError
from occprep.names import check_names, closest


class UnityConfig(msgspec.Struct, frozen=True):
    """Sensor id → camera channel and label → nuScenes category name for a Unity dataset.

    Unmapped labels keep their name; with an empty `cameras` map a single camera becomes
    CAM_FRONT. `dataset` names the nuScenes-format convention (camera order, detection names).
    """

    name: str
    cameras: Dict[str, str] = {}
    labels: Dict[str, str] = {}
    lidar_channel: str = "LIDAR_TOP"
    dataset: str = "nuscenes"

    def category(self, label: str) -> str:
        return self.labels.get(label, label)

    def camera_channel(self, sensor_id: str, assigned: Dict[str, str]) -> str:
        """The channel of camera `sensor_id`, given the sensors `assigned` so far (updated in place)."""
        if sensor_id in assigned:
            return assigned[sensor_id]
        if self.cameras:
            if sensor_id not in self.cameras:
                near = [key for key in self.cameras if sensor_id in closest(key, [sensor_id])]
                typo = f"; its \"cameras\" map names {', '.join(f'{k} (did you mean {sensor_id}?)' for k in near)}" \
                    if near else ""
                raise OccprepError(f"camera sensor {sensor_id!r} has no channel in unity config {self.name!r}{typo}: "
                                   "add it to its \"cameras\" map (sensor id → e.g. CAM_FRONT)")
            channel = self.cameras[sensor_id]
        elif assigned:
            raise OccprepError(f"camera sensors {next(iter(assigned))!r} and {sensor_id!r}: several cameras need a "
                               "unity config with a \"cameras\" map (sensor id → e.g. CAM_FRONT); pass it with "
                               "--unity-config")
        else:
            channel = "CAM_FRONT"
        if channel in assigned.values():
            raise OccprepError(f"unity config {self.name!r}: two sensors map to camera channel {channel}")
        assigned[sensor_id] = channel
        return channel

    def check_names(self, labels: Collection[str], sensor_ids: Collection[str]) -> None:
        """The labels and camera sensor ids this config maps exist in the dataset (`labels`,
        `sensor_ids`: what its files declare or use); else one error listing the unknown ones."""
        check_names(self.labels, labels, "label", f"--unity-config {self.name} \"labels\"",
                    f"the dataset's labels are {', '.join(sorted(labels)) or '(none)'}")
        check_names(self.cameras, sensor_ids, "camera sensor id", f"--unity-config {self.name} \"cameras\"",
                    f"the dataset's sensor ids are {', '.join(sorted(sensor_ids)) or '(none)'}")
        base = dataset_config(self.dataset)
        named = [("camera channel", "cameras", self.cameras.values(), base.camera_channels),
                 ("LiDAR channel", "lidar_channel", [self.lidar_channel], [base.lidar_channel]),
                 ("category", "labels", self.labels.values(), [*base.detection_names, *base.detection_names.values()])]
        for what, field, values, known in named:
            typos = [v for v in dict.fromkeys(values) if v not in known and closest(v, known)]
            check_names(typos, known, what, f"--unity-config {self.name} \"{field}\"",
                        f"use the names of dataset config {base.name!r} (other names are kept as they are unless "
                        "they look like a typo of one)", among=f"of dataset config {base.name!r}")

    def channel_order(self, channels: Iterable[str]) -> Tuple[str, ...]:
        """Present camera channels in the dataset convention's order, others after them by name."""
        known = dataset_config(self.dataset).camera_channels
        present = set(channels)
        return tuple(c for c in known if c in present) + tuple(sorted(present - set(known)))


def unity_config(name_or_path: str = "default") -> UnityConfig:
    """The Unity mapping `name_or_path` ('default' or a JSON file)."""
    return load_config(name_or_path, UnityConfig, "unity-")
