"""bench and demo plumbing on tiny synthetic data (no timing assertions)."""

import json

import occprep.synth
from occprep.bench import bench
from occprep.demo import STEPS, demo
from occprep.pickles import load_pickle
from occprep.reporting import Reporter


def test_bench_synthesises_once_and_measures_child_runs(tmp_path):
    summary, lines = bench(scenes=1, repeat=2, workdir=tmp_path, reporter=Reporter("bench", quiet=True))
    assert summary["samples"] == 40 and summary["scenes"] == 1 and len(summary["runs"]) == 2
    assert all(run["wall_s"] > 0 and run["cpu_s"] > 0 and run["peak_rss_mb"] > 10 for run in summary["runs"])
    assert all(run["together_mb"] > 10 for run in summary["runs"])  # /proc is there on Linux
    median = lines[-3].split()
    assert median[0] == "median" and abs(float(median[-1]) - summary["median_together_mb"]) <= 0.6
    assert list(summary["median_stages_s"]) == ["read", "scan", "can_bus", "temporal", "write"]
    assert lines[-1].startswith("  stages (median wall s): read ")
    marker = tmp_path / "synth-1" / "synth-complete.json"
    stamp = marker.stat().st_mtime_ns
    bench(scenes=1, repeat=1, workdir=tmp_path, reporter=Reporter("bench", quiet=True))
    assert marker.stat().st_mtime_ns == stamp  # reused, not re-synthesised


def test_bench_on_a_users_dataset_and_at_a_given_density(tmp_path, monkeypatch, capsys, generated_mini):
    from helpers import run_cli

    base = generated_mini.lay_out(tmp_path / "mine")
    code, _, err = run_cli(["bench", "--dataset", base / "data" / "nuscenes", "--version", "v1.0-mini", "--repeat", "1",
                            "--target", "bevformer,vad", "--report", tmp_path / "r.json"], monkeypatch, capsys)
    assert code == 0, err
    assert "(v1.0-mini: 3 scenes, 120 samples), 1 run(s):" in err
    code, _, err = run_cli(["bench", "--dataset", tmp_path, "--repeat", "1"], monkeypatch, capsys)
    assert code == 2 and "no v1.0-trainval/ folder in it" in err
    dense, _ = bench(scenes=1, repeat=1, workdir=tmp_path, reporter=Reporter("bench", quiet=True), boxes_per_sample=60)
    sparse, _ = bench(scenes=1, repeat=1, workdir=tmp_path, reporter=Reporter("bench", quiet=True), boxes_per_sample=15)
    assert dense["samples"] == sparse["samples"] == 40
    per_sample = {density: len(json.loads((tmp_path / f"synth-1-{density}boxes" / "nuscenes" / "v1.0-trainval" /
                                           "sample_annotation.json").read_text())) / 40 for density in (60, 15)}
    assert 45 < per_sample[60] < 75 and 10 < per_sample[15] < 20, per_sample


def test_demo_runs_every_step(tmp_path, monkeypatch):
    real = occprep.synth.synthesize
    monkeypatch.setattr(occprep.synth, "synthesize",
                        lambda out, version, **kw: real(out, version, **{**kw, "scenes": 2, "samples_per_scene": 3}))
    summary, lines = demo(tmp_path / "demo", Reporter("demo", quiet=True))
    assert summary["steps"] == [name for name, _ in STEPS] and summary["steps"][:2] == ["synth", "create-infos"]
    infos = load_pickle(tmp_path / "demo" / "data" / "nuscenes" / "nuscenes_infos_temporal_train.pkl")["infos"]
    assert len(infos) == 3 and "[create-infos]" in lines
    assert (tmp_path / "demo" / "sample.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any(line.startswith("next: occprep check") for line in lines)
    voxel_lists = tmp_path / "demo" / "voxel-lists" / "data"
    assert len(load_pickle(voxel_lists / "nuscenes_infos_val.pkl")["infos"]) == 3  # SurroundOcc's file
    assert all("lidarseg" in info for info in load_pickle(voxel_lists / "nuscenes" / "nuscenes_occ_infos_val.pkl")["infos"])
    assert len(load_pickle(tmp_path / "demo" / "data" / "nuscenes" / "nuscenes_infos_val_occ.pkl")["infos"]) == 3


def test_a_stage_inside_another_counts_as_its_own_and_not_twice(monkeypatch):
    import occprep.reporting

    # perf_counter readings: Reporter() 0; scan starts 1; can_bus inside it 2 -> 5; scan ends 6; can_bus again 7 -> 8
    clock = iter([0.0, 1.0, 2.0, 5.0, 6.0, 7.0, 8.0])
    monkeypatch.setattr(occprep.reporting.time, "perf_counter", lambda: next(clock))
    reporter = Reporter("test", quiet=True)
    with reporter.stage("scan"):
        with reporter.stage("can_bus"):
            pass
    with reporter.stage("can_bus"):
        pass
    assert reporter.stages == {"scan": 2.0, "can_bus": 4.0}  # scan's 5 s less can_bus's 3; can_bus 3 + 1
