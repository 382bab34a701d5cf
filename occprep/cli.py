"""The `occprep` command line: parses flags and calls the stages; no logic of its own."""

from __future__ import annotations

import functools
import sys
import traceback
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import List

import click
from click.core import ParameterSource

from occprep import __version__
from occprep.errors import OccprepError
from occprep.occupancy import FORMATS as OCCUPANCY_FORMATS
from occprep.reporting import Reporter
from occprep.workers import worker_died

_debug = False


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    global _debug
    _debug = _debug or value


def _given_flags(*names: str) -> List[str]:
    """The flags (e.g. `--sharded-output`) of the current command's parameters `names` that the user gave."""
    context = click.get_current_context()
    return [param.opts[0] for param in context.command.params
            if param.name in names and context.get_parameter_source(param.name) != ParameterSource.DEFAULT]


def vad_fix_options(func):
    """Add a --fix-vad-<name> flag per VAD reference fault (`occprep.targets.vad.FIXES`); pass `fixes`
    (frozenset of the names given)."""
    from occprep.targets.vad import FIXES

    flags = {f"fix_vad_{name.replace('-', '_')}": name for name in FIXES}

    @functools.wraps(func)
    def wrapper(**kwargs):
        chosen = frozenset(name for flag, name in flags.items() if kwargs.pop(flag))
        return func(fixes=chosen, **kwargs)

    for name, meaning in reversed(list(FIXES.items())):
        wrapper = click.option(f"--fix-vad-{name}", is_flag=True, help=f"vad: {meaning}.")(wrapper)
    return wrapper


def reporting_options(func):
    """Add --quiet, --report FILE and --debug; pass a `reporter` (Reporter) to the command."""

    @click.option("--quiet", "-q", is_flag=True, help="No progress bars and no summary.")
    @click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
                  help="Also write the summary as JSON to this file.")
    @click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug,
                  help="Show the full traceback on errors.")
    @functools.wraps(func)
    def wrapper(quiet: bool, report_path: Path, **kwargs):
        command = click.get_current_context().info_name
        return func(reporter=Reporter(command, quiet=quiet, report_path=report_path), **kwargs)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="occprep")
@click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug,
              help="Show the full traceback on errors.")
def cli() -> None:
    """Turn nuScenes-format datasets into temporal info pickles and merge occupancy/flow ground truth."""


@cli.command("merge-occ")
@click.option("--infos-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder of the create-infos output (e.g. {extra_tag}_infos_temporal_{split}.pkl).")
@click.option("--occ-root", required=True,
              help="The occupancy release: OpenOcc v1 (holds occ_gt_{split}.json), the folder holding Occ3D's gts/ or "
                   "OpenOcc v2's openocc_v2/, SurroundOcc's nuscenes_occ (holds samples/*.npy) or nuScenes-Occupancy "
                   "(holds scene_<token>/occupancy/).")
@click.option("--extra-tag", default="nuscenes", show_default=True, help="Prefix of the info file names.")
@click.option("--target", default="bevformer", show_default=True,
              help="Format of the infos (their file names): bevformer, mmdet3d, mmdet3d-v2, bevdet, streampetr or sparsebev.")
@click.option("--splits", default="train,val", show_default=True, help="Comma-separated: train, val, test.")
@click.option("--format", "format_", type=click.Choice(list(OCCUPANCY_FORMATS)), default="openocc-v1",
              show_default=True, help="Ground truth layout.")
@click.option("--root-path", help="The nuScenes folder with the infos' version: surroundocc and openoccupancy name "
                                  "files by LiDAR reading, which the tables give.")
@click.option("--version", "version", help="The version folder under --root-path (default: the one the infos name).")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where merged pickles go (default: where the format's consumers read them: the occ root; "
                   "surroundocc: its parent; openoccupancy: --infos-dir).")
@click.option("--allow-missing", is_flag=True,
              help="Write the infos that have ground truth and report the rest, instead of failing.")
@click.option("--verify", is_flag=True, help="Open and check every ground truth file (shape, dtype, ranges).")
@click.option("--engine", type=click.Choice(["local", "dask"]), default="local", show_default=True,
              help="With --verify: check the files (in tasks of whole scenes) in local processes or on Dask "
                   "(pip install 'occprep[dask]').")
@click.option("--scheduler", help="With --engine dask: the scheduler's address (e.g. tcp://host:8786); default: start "
                                  "a local cluster; 'synchronous' runs every task in this process.")
@click.option("--workers", type=click.IntRange(min=1),
              help="With --verify: worker processes of the local pool or local Dask cluster (1: check in this "
                   "process) [default: the cores].")
@click.option("--path-style", type=click.Choice(["as-is", "relative", "absolute"]), default="as-is",
              show_default=True, help="as-is: paths as the release names them; relative: to --path-root; "
              "absolute: resolved.")
@click.option("--path-root", type=click.Path(file_okay=False, path_type=Path),
              help="Base directory for --path-style relative.")
@reporting_options
def merge_occ_command(reporter: Reporter, infos_dir: Path, occ_root: str, extra_tag: str, target: str, splits: str,
                      format_: str, root_path: str, version: str, out_dir: Path, allow_missing: bool, verify: bool,
                      engine: str, scheduler: str, workers: int, path_style: str, path_root: Path) -> None:
    """Merge occupancy/flow ground truth paths into temporal infos, reporting coverage."""
    from occprep.merge import MergeOptions, merge_occ, parse_splits, summarize

    given = _given_flags("engine", "scheduler")
    if given and not verify:
        raise OccprepError(f"{given[0]} needs --verify (the file checks are what runs on the engine)")
    options = MergeOptions(infos_dir=infos_dir, occ_root=occ_root, format=format_, extra_tag=extra_tag,
                           splits=parse_splits(splits), out_dir=out_dir, allow_missing=allow_missing,
                           verify=verify, workers=workers, engine=engine, scheduler=scheduler, path_style=path_style,
                           path_root=path_root, target=target, root_path=root_path, version=version)
    result = merge_occ(options, reporter)
    reporter.finish(*summarize(result))
    if result.problem:
        raise OccprepError(result.problem)


@cli.command("check")
@click.option("--root-path", type=click.Path(path_type=Path), default=Path("./data/nuscenes"), show_default=True,
              help="The nuScenes folder: holds v1.0-*/, maps/, samples/, sweeps/.")
@click.option("--canbus", type=click.Path(path_type=Path), default=Path("./data"), show_default=True,
              help="The folder that contains can_bus/.")
@click.option("--occ-root", type=click.Path(path_type=Path),
              help="Occupancy GT: occ_gt_release_v1_0/ (OpenOcc v1) or the folder holding gts/ (Occ3D). "
                   "Default: looked for beside --root-path.")
@click.option("--version", "version", help="v1.0-mini, v1.0-trainval, v1.0-test or v1.0 (trainval + test). "
              "Default: every v1.0-* folder present.")
@click.option("--config", "config_name", default="nuscenes", show_default=True,
              help="Dataset convention: a configs/ name or a JSON file (CAN bus blacklist).")
@click.option("--blobs/--no-blobs", default=True, show_default=True, help="Check that keyframe files exist.")
@click.option("--sweeps", is_flag=True, help="Also check the sweep (non-keyframe) files.")
@reporting_options
def check_command(reporter: Reporter, root_path: Path, canbus: Path, occ_root: Path, version: str,
                  config_name: str, blobs: bool, sweeps: bool) -> None:
    """Walk the data tree and mark every item; exit 0 only when create-infos has all it needs."""
    from occprep.check import CheckRequest, check_nuscenes, passed, render_tree, summarize
    from occprep.config import dataset_config

    from occprep.unity.dataset import unity_layout
    from occprep.unity.validate import validate as validate_unity

    request = CheckRequest(root_path, canbus, occ_root, (version,) if version else (), blobs, sweeps, config_name)
    if unity_layout(root_path):
        findings = validate_unity(root_path)
    else:
        findings = check_nuscenes(request, dataset_config(config_name), reporter)
    for line in render_tree(findings, problems_only=reporter.quiet):
        click.echo(line)
    counts = summarize(findings)
    verdict = ("ready for create-infos" if passed(findings) else "NOT ready for create-infos") + \
        f" ({counts['error']} error(s), {counts['warn']} warning(s), {reporter.elapsed:.1f} s)"
    reporter.finish({"ready": passed(findings), "counts": counts, "findings": findings}, [verdict])
    if not passed(findings):
        sys.exit(1)


@cli.command("inspect")
@click.argument("pkl", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.option("--all-paths", is_flag=True, help="Check that every path exists (default: an evenly spaced "
              "sample of 200 per key).")
@reporting_options
def inspect_command(reporter: Reporter, pkl: Path, as_json: bool, all_paths: bool) -> None:
    """Describe any info pickle (or a create-infos --sharded-output index): format, version, keys per consumer,
    classes, CAN bus, occupancy, paths."""
    import msgspec

    from occprep.inspection import inspect_pickle, render_report

    report = inspect_pickle(pkl, all_paths=all_paths)
    if as_json:
        click.echo(msgspec.json.format(msgspec.json.encode(report), indent=2))
    else:
        for line in render_report(report):
            click.echo(line)
    reporter.finish({"inspection": report}, [])


@cli.command("show")
@click.argument("pkl", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--token", help="Sample token of the info to draw.")
@click.option("--index", type=int, help="Position of the info in the pickle (negative counts from the end).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("sample.png"),
              show_default=True, help="PNG to write.")
@click.option("--data-root", type=click.Path(file_okay=False, path_type=Path),
              help="Folder relative occupancy paths start from (default: tried from the current directory, "
                   "then the pickle's folder and its parents).")
@click.option("--occ-root", help="The nuScenes-Occupancy folder, for infos merged with --format openoccupancy "
                                 "(they name no path).")
@click.option("--no-occupancy", is_flag=True, help="Draw the bird's-eye view only.")
@reporting_options
def show_command(reporter: Reporter, pkl: Path, token: str, index: int, out: Path, data_root: Path,
                 occ_root: str, no_occupancy: bool) -> None:
    """Draw one sample: boxes, velocities, camera frusta in the LiDAR frame, and its occupancy from above."""
    from occprep.show import show_sample

    shown = show_sample(pkl, token, index, out, data_root, occupancy=not no_occupancy, occ_root=occ_root)
    occupancy = f" (occupancy from {shown.occupancy})" if shown.occupancy else ""
    reporter.finish({"out": str(shown.out), "token": shown.token,
                     "occupancy": str(shown.occupancy) if shown.occupancy else None}, [f"wrote {shown.out}{occupancy}"])


@cli.command("shard")
@click.option("--root-path", type=click.Path(path_type=Path), required=True,
              help="The nuScenes folder that holds the version folder.")
@click.option("--version", "version", required=True, help="The version folder to shard, e.g. v1.0-trainval.")
@click.option("--canbus", type=click.Path(path_type=Path), required=True,
              help="Folder that contains can_bus/ (the nuScenes CAN bus expansion).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="The shards folder: <version>/ is written in it (replaced only once complete, and only if it "
                   "is a shard folder).")
@click.option("--scenes-per-bucket", type=click.IntRange(min=1), default=64, show_default=True,
              help="Scenes per Parquet file (one row group each).")
@click.option("--force", is_flag=True, help="Rebuild even when the run would be skipped (nothing changed).")
@reporting_options
def shard_command(reporter: Reporter, root_path: Path, version: str, canbus: Path, out: Path,
                  scenes_per_bucket: int, force: bool) -> None:
    """Cut a version's tables and CAN bus files into per-scene Parquet shards, in one streaming pass.

    A re-run is skipped when <out>/<version> is complete and nothing changed: the same tables and CAN bus
    files (size and modification time), --scenes-per-bucket and --canbus, and every file it wrote still
    there at its size; otherwise it is rebuilt. --force rebuilds anyway.
    """
    from occprep.shards.write import shard_version, summarize

    manifest, skipped = shard_version(root_path, version, canbus, out, scenes_per_bucket, reporter, force=force)
    reporter.finish(*summarize(manifest, skipped, out, reporter.elapsed))


@cli.command("create-infos")
@click.option("--root-path", default="./data/nuscenes", show_default=True,
              help="Dataset root with the version folders; prefixes every path in the infos as typed.")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("./data/nuscenes"),
              show_default=True, help="Where {extra_tag}_infos_temporal_{split}.pkl go.")
@click.option("--extra-tag", default="nuscenes", show_default=True, help="Prefix of the info file names.")
@click.option("--version", "version", default="v1.0-trainval", show_default=True,
              help="v1.0-mini, v1.0-trainval, v1.0-test, or v1.0 (trainval and test, those present).")
@click.option("--canbus", type=click.Path(path_type=Path), default=Path("./data"), show_default=True,
              help="Folder that contains can_bus/ (the nuScenes CAN bus expansion).")
@click.option("--target", "target", default="bevformer", show_default=True,
              help="Comma-separated output formats, all from one read of the tables: bevformer, mmdet3d, "
                   "mmdet3d-v2, bevdet, streampetr, sparsebev, uniad, vad (see README).")
@click.option("--max-sweeps", type=click.IntRange(min=0), default=None,
              help="Earlier LIDAR_TOP readings per info [default: each target's reference: 10; bevdet 0].")
@click.option("--keep-float64", is_flag=True,
              help="mmdet3d-v2: keep float64 where the reference rounds matrices, center_2d and depth through float32.")
@click.option("--can-bus-mode", type=click.Choice(["reference", "nearest-before"]), default="reference",
              show_default=True, help="reference: slots 7-15 from the next message, as the reference "
              "converter; nearest-before: every slot from the last message at or before the sample.")
@click.option("--config", "config_name", default="nuscenes", show_default=True,
              help="Dataset convention: a name in configs/ or a JSON file.")
@click.option("--splits", "splits_file", type=click.Path(dir_okay=False, path_type=Path),
              help="JSON {split: [scene names]} instead of the official nuScenes lists.")
@click.option("--strict", is_flag=True, help="A missing keyframe file is an error (default: leave its scene out).")
@click.option("--no-file-check", is_flag=True, help="Do not check that keyframe files exist (metadata-only copies).")
@click.option("--format", "format_", type=click.Choice(["auto", "nuscenes", "perception", "solo"]), default="auto",
              show_default=True, help="Dataset layout: nuScenes tables, Unity legacy captures or Unity SOLO "
              "(auto detects it from --root-path).")
@click.option("--unity-config", default="default", show_default=True,
              help="Unity datasets: sensor id -> camera channel and label -> category map (configs/unity-*.json or a file).")
@click.option("--shards", type=click.Path(file_okay=False, path_type=Path),
              help="Build from the shards `occprep shard` wrote (tables and CAN bus come from them), a map over "
                   "scene groups on --engine.")
@click.option("--engine", type=click.Choice(["local", "dask"]), default="local", show_default=True,
              help="With --shards: run the scene groups in local processes or on Dask (pip install 'occprep[dask]').")
@click.option("--scheduler", help="With --engine dask: the scheduler's address (e.g. tcp://host:8786); default: start "
                                  "a local cluster; 'synchronous' runs every task in this process.")
@click.option("--workers", type=click.IntRange(min=1),
              help="With --shards: worker processes of the local pool or local Dask cluster [default: the cores].")
@click.option("--sharded-output", is_flag=True,
              help="With --shards: each scene group writes its own pickle (<file stem>/part-N.pkl) and an index "
                   "<file stem>.index.json names them, for datasets too large for one pickle.")
@vad_fix_options
@reporting_options
def create_infos_command(reporter: Reporter, root_path: str, out_dir: Path, extra_tag: str, version: str,
                         canbus: Path, target: str, max_sweeps: int, keep_float64: bool, can_bus_mode: str,
                         config_name: str, splits_file: Path, strict: bool, no_file_check: bool, format_: str,
                         unity_config: str, shards: Path, engine: str, scheduler: str, workers: int,
                         sharded_output: bool, fixes: frozenset) -> None:
    """Write the info pickles of a nuScenes-format dataset, in one or more consumers' formats."""
    from occprep.create import CreateOptions, create_infos

    given = _given_flags("engine", "scheduler", "workers", "sharded_output")
    if given and shards is None:
        raise OccprepError(f"{given[0]} needs --shards (the map over scene groups runs on shards: occprep shard)")
    unity = _given_flags("format_", "unity_config")
    if unity and shards is not None:
        raise OccprepError(f"{unity[0]} does not apply to --shards (shards hold nuScenes tables; export a Unity "
                           "dataset with occprep export-nuscenes first)")
    options = CreateOptions(max_sweeps=max_sweeps, can_bus_mode=can_bus_mode, file_check=not no_file_check,
                            strict=strict, targets=tuple(target.split(",")),
                            root_given=bool(_given_flags("root_path")), float64=keep_float64, fixes=fixes,
                            out_dir_given=bool(_given_flags("out_dir")))
    from occprep.unity.dataset import create_unity_infos, resolve_format
    from occprep.unity.mapping import unity_config as load_unity_config

    if shards is not None:
        from occprep.engines import make_engine
        from occprep.sharded import create_infos_from_shards

        with make_engine(engine, scheduler, workers, reporter) as running:
            summary, lines = create_infos_from_shards(shards, root_path, out_dir, extra_tag, version, running,
                                                      config_name, splits_file, options, reporter, sharded_output)
        reporter.finish(summary, lines)
        return
    format_ = resolve_format(Path(root_path), format_)
    if format_ == "nuscenes":
        summary, lines = create_infos(root_path, out_dir, extra_tag, version, canbus, config_name, splits_file,
                                      options, reporter)
    else:
        summary, lines = create_unity_infos(root_path, out_dir, extra_tag, format_, load_unity_config(unity_config),
                                            version, splits_file, options, reporter)
    reporter.finish(summary, lines)


@cli.command("convert")
@click.argument("pkl", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--to", "to", required=True, help="Target format: bevformer, mmdet3d, mmdet3d-v2, bevdet, streampetr, sparsebev, uniad or vad.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Output file [default: the target's file name beside the input, in <target>/ if that is the "
                   "input's name]. Never the input itself.")
@click.option("--root-path", help="Dataset root with the input's version folder: fills what the input lacks.")
@click.option("--canbus", type=click.Path(path_type=Path), help="Folder that contains can_bus/ (for bevformer's can_bus, vad's CAN bus values).")
@click.option("--config", "config_name", default="nuscenes", show_default=True,
              help="Dataset convention: a name in configs/ or a JSON file.")
@click.option("--max-sweeps", type=click.IntRange(min=0), default=None,
              help="LiDAR sweeps per info [default: the target's reference: 10; bevdet 0].")
@click.option("--can-bus-mode", type=click.Choice(["reference", "nearest-before"]), default="reference",
              show_default=True, help="As create-infos (only when can_bus comes from the tables).")
@click.option("--keep-float64", is_flag=True, help="mmdet3d-v2: keep float64 where the reference rounds through float32.")
@vad_fix_options
@reporting_options
def convert_command(reporter: Reporter, pkl: Path, to: str, out: Path, root_path: str, canbus: Path, config_name: str,
                    max_sweeps: int, can_bus_mode: str, keep_float64: bool, fixes: frozenset) -> None:
    """Convert any target's info pickle into another target's (boxes converted, missing keys from the tables)."""
    from occprep.convert import ConvertRequest, convert
    from occprep.create import CreateOptions

    options = CreateOptions(max_sweeps=max_sweeps, can_bus_mode=can_bus_mode, float64=keep_float64, fixes=fixes)
    reporter.finish(*convert(ConvertRequest(pkl, to, out, root_path, canbus, config_name, options), reporter))


@cli.command("synth")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Output folder (becomes the data root: nuscenes/, can_bus/, occ_gt_release_v1_0/).")
@click.option("--version", default="v1.0-mini", show_default=True,
              type=click.Choice(["v1.0-mini", "v1.0-trainval", "v1.0-test"]), help="nuScenes version to imitate.")
@click.option("--scenes", type=click.IntRange(min=1), default=None,
              help="Write the first N scenes of the version's order (default: all). Order: "
                   "v1.0-mini and v1.0-trainval interleave the official train and val lists in proportion, "
                   "starting with one of each (so N=2 holds both splits); v1.0-test follows the test list.")
@click.option("--samples-per-scene", type=click.IntRange(min=2), default=40, show_default=True,
              help="Keyframes (2 Hz) per scene.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same bytes.")
@click.option("--occ", default=None,
              help="Comma-separated occupancy formats: openocc-v1, occ3d, openocc-v2, surroundocc, openoccupancy; "
                   "empty for none. Default: openocc-v1,occ3d,openocc-v2 for v1.0-mini, none for the others (disk "
                   "per keyframe: OpenOcc v1 ~1.4 MB, Occ3D and OpenOcc v2 ~30 KB, SurroundOcc ~2.3 MB, "
                   "OpenOccupancy ~6.6 MB). Test scenes never get occupancy.")
@click.option("--blobs", type=click.Choice(["none", "empty", "tiny"]), default="none", show_default=True,
              help="Sensor files at every sample_data filename: none; empty (zero bytes); tiny (grey 1600x900 "
                   "JPEGs, 256-point .pcd.bin, 4-point radar .pcd).")
@click.option("--without-can-bus", default="",
              help="Comma-separated scene names to leave without CAN bus files (blacklisted scenes and "
                   "test scenes never get them).")
@click.option("--boxes-per-sample", type=click.IntRange(min=1), default=None,
              help="About how many annotations per sample [default: 30; nuScenes trainval averages about 34].")
@reporting_options
def synth_command(reporter: Reporter, out: Path, version: str, scenes: int, samples_per_scene: int, seed: int,
                  occ: str, blobs: str, without_can_bus: str, boxes_per_sample: int) -> None:
    """Write a synthetic dataset in the exact on-disk format of nuScenes (tables, CAN bus, occupancy)."""
    import msgspec

    from occprep.synth import summary_lines, synthesize

    formats = None if occ is None else [f for f in occ.split(",") if f]
    summary = synthesize(out, version, scenes, samples_per_scene, seed, formats, blobs,
                         [s for s in without_can_bus.split(",") if s], reporter, boxes_per_sample)
    reporter.finish(msgspec.to_builtins(summary), summary_lines(summary))


@cli.command("export-nuscenes")
@click.option("--root-path", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="The Unity dataset: a SOLO run (sequence.<N>/) or legacy captures (Dataset*/captures_*.json).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Where <version>/ (13 tables), can_bus/ and maps/ go.")
@click.option("--version", default="v1.0-trainval", show_default=True,
              type=click.Choice(["v1.0-mini", "v1.0-trainval", "v1.0-test"]), help="Name of the version folder.")
@click.option("--format", "format_", type=click.Choice(["auto", "perception", "solo"]), default="auto",
              show_default=True, help="Unity layout (auto detects it).")
@click.option("--unity-config", default="default", show_default=True,
              help="Sensor id -> camera channel and label -> category map (configs/unity-*.json or a file).")
@reporting_options
def export_nuscenes_command(reporter: Reporter, root_path: Path, out: Path, version: str, format_: str,
                            unity_config: str) -> None:
    """Write a Unity synthetic dataset as nuScenes tables (devkit-loadable) plus CAN bus pose files."""
    from occprep.unity.dataset import export_nuscenes
    from occprep.unity.mapping import unity_config as load_unity_config

    reporter.finish(*export_nuscenes(root_path, out, version, format_, load_unity_config(unity_config), reporter))


@cli.command("bench")
@click.option("--scenes", type=click.IntRange(min=1), default=85, show_default=True,
              help="Synthetic v1.0-trainval scenes (40 samples each; 850 is trainval size).")
@click.option("--boxes-per-sample", type=click.IntRange(min=1), default=None,
              help="Density of the synthetic scenes [default: synth's, 30], to match a dataset's.")
@click.option("--dataset", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Time a dataset of your own instead: the root that holds the version folder.")
@click.option("--version", default="v1.0-trainval", show_default=True, help="With --dataset: its version folder.")
@click.option("--canbus", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="With --dataset: the folder that contains can_bus/ [default: the root or its parent].")
@click.option("--repeat", type=click.IntRange(min=1), default=3, show_default=True, help="create-infos runs.")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=Path("./bench"),
              show_default=True, help="Where the synthetic dataset is written once and reused.")
@click.option("--target", default="bevformer", show_default=True,
              help="Comma-separated targets create-infos writes in each run (see create-infos --target).")
@reporting_options
def bench_command(reporter: Reporter, scenes: int, boxes_per_sample: int, dataset: Path, version: str, canbus: Path,
                  repeat: int, workdir: Path, target: str) -> None:
    """Time create-infos (wall time, peak memory, stages; median of runs) on a synthetic dataset or yours."""
    from occprep.bench import bench, user_dataset

    given = user_dataset(dataset, version, canbus) if dataset is not None else None
    reporter.finish(*bench(scenes, repeat, workdir, reporter, target, given, boxes_per_sample))


@cli.command("demo")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("./demo"), show_default=True,
              help="Demo folder: data/ gets the synthetic mini dataset and the infos.")
@reporting_options
def demo_command(reporter: Reporter, out: Path) -> None:
    """Synthesise the 10-scene mini dataset (CAN bus, occupancy) and run the pipeline on it."""
    from occprep.demo import demo

    reporter.finish(*demo(out, reporter))


def _close_progress_bars() -> None:
    """Clear progress bars an error interrupted, so that the message starts its own line."""
    from tqdm import tqdm

    bars = list(tqdm._instances)
    for bar in bars:
        bar.close()
    if bars and not sys.stderr.isatty():
        sys.stderr.write("\n")  # a log gets the message on a line of its own


def main() -> None:
    """Console entry point: one-line errors and a non-zero exit code; tracebacks only with --debug."""
    try:
        try:
            cli.main(standalone_mode=False)
        except BrokenProcessPool:  # a pool's worker was killed: not a bug, and named as a forked one's is
            raise worker_died("killed") from None
    except click.exceptions.Abort:
        _close_progress_bars()
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        command = f"occprep {exc.ctx.info_name} --help" if exc.ctx and exc.ctx.parent else "occprep --help"
        click.echo(f"error: {exc.format_message()} (see `{command}`)", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except OccprepError as exc:
        _close_progress_bars()
        if _debug:
            traceback.print_exc()
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _close_progress_bars()
        click.echo("interrupted: nothing was written over existing outputs", err=True)
        sys.exit(130)
    except Exception as exc:
        _close_progress_bars()
        if _debug:
            raise
        click.echo(f"internal error: {type(exc).__name__}: {exc} (a bug in occprep; rerun with --debug "
                   "for the traceback and report it)", err=True)
        sys.exit(1)
