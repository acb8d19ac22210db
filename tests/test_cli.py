import json
import os
from importlib import resources

import click
import pytest
from click.testing import CliRunner

from smplus.cli import main

from conftest import FIXTURE_ANNOTATIONS, FIXTURE_IMAGES


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_every_command_is_documented():
    for name, cmd in main.commands.items():
        assert cmd.help and len(cmd.help.strip()) > 20, name
        for p in cmd.params:
            if isinstance(p, click.Option):
                assert p.help, f"{name} --{p.name} has no help"


def test_transform_writes_dataset_and_summary(tmp_path, tinyperson_target):
    target, _ = tinyperson_target
    out = tmp_path / "out"
    r = invoke("transform", "--source", FIXTURE_ANNOTATIONS, "--images", FIXTURE_IMAGES, "--out", out,
               "--target", target, "--mode", "rsm", "--seed", "3", "--bins", "10", "--dry-run")
    assert r.exit_code == 0, r.output
    assert "planned 6 images" in r.output and "JSD to target" in r.output
    report = json.loads((out / "report.json").read_text())
    assert report["mode"] == "rsm" and report["seed"] == 3 and report["target"]["bins"] == 10


def test_non_empty_out_is_refused_unless_overwrite(tmp_path):
    out = tmp_path / "out"
    args = ["transform", "--source", FIXTURE_ANNOTATIONS, "--images", FIXTURE_IMAGES, "--out", out, "--dry-run"]
    assert invoke(*args).exit_code == 0
    (out / "keep.txt").write_text("x")
    r = invoke(*args)
    assert r.exit_code == 1
    assert r.output.strip() == f"Error: output folder {out} is not empty; pass --overwrite to replace it " \
                               "or --resume to continue an interrupted run"
    assert invoke(*args, "--overwrite").exit_code == 0
    # --overwrite replaces smplus's own output only
    assert (out / "keep.txt").read_text() == "x" and (out / "annotations.json").exists()


def test_histogram_command(tmp_path, tinyperson_target):
    target, sizes = tinyperson_target
    out = tmp_path / "h.json"
    r = invoke("histogram", target, "-o", out, "--bins", "5", "--except-rate", "0")
    assert r.exit_code == 0, r.output
    h = json.loads(out.read_text())
    assert h["format"] == "smplus-histogram" and len(h["edges"]) == 6 and h["count"] == len(sizes)
    assert h["edges"][0] == pytest.approx(min(sizes))
    # and transform accepts it as --target
    r = invoke("transform", "--source", FIXTURE_ANNOTATIONS, "--images", FIXTURE_IMAGES,
               "--out", tmp_path / "o", "--target", out, "--dry-run")
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("args, message", [
    (["--psi-p", "1.5"], "Invalid value for '--psi-p'"),
    (["--bins", "2"], "Invalid value for '--bins'"),
    (["--mode", "xyz"], "Invalid value for '--mode'"),
    (["--categories", "unicorn"], "--categories: unknown category 'unicorn'"),
])
def test_bad_options_are_usage_errors(tmp_path, args, message):
    r = invoke("transform", "--source", FIXTURE_ANNOTATIONS, "--images", FIXTURE_IMAGES,
               "--out", tmp_path / "o", "--dry-run", *args)
    assert r.exit_code == 2 and message in r.output
    assert "Traceback" not in r.output


def test_demo_runs_on_bundled_sample(tmp_path):
    r = invoke("demo", tmp_path / "demo")
    assert r.exit_code == 0, r.output
    assert len(os.listdir(tmp_path / "demo" / "images")) == 4
    assert json.loads((tmp_path / "demo" / "annotations.json").read_text())["annotations"]


def test_stats_prints_sizes_jsd_and_writes_a_png(tmp_path, tinyperson_target):
    target, _ = tinyperson_target
    png = tmp_path / "sizes.png"
    r = invoke("stats", FIXTURE_ANNOTATIONS, "--target", target, "--plot", png)
    assert r.exit_code == 0, r.output
    raw = json.load(open(FIXTURE_ANNOTATIONS))
    n = sum(1 for a in raw["annotations"] if not a["iscrowd"])
    assert f"boxes: {n}" in r.output and "JSD to target" in r.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image
    assert matplotlib.image.imread(str(png)).shape[0] > 100
    r = invoke("stats", FIXTURE_ANNOTATIONS, "--target", target, "--json")
    st = json.loads(r.output)
    assert st["boxes"] == n and 0 < st["jsd"] <= 0.7 and st["percentiles"]["50"] > 20  # COCO: large objects


def test_config_file_sets_options_and_flags_override(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"mode": "rsm", "seed": 7, "psi-p": 0.9, "level": "image"}))
    base = ["transform", "--source", FIXTURE_ANNOTATIONS, "--images", FIXTURE_IMAGES, "--dry-run"]
    r = invoke(*base, "--out", tmp_path / "a", "--config", cfg)
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "a" / "report.json").read_text())
    assert (rep["mode"], rep["seed"], rep["parameters"]["psi_p"], rep["level"]) == ("rsm", 7, 0.9, "image")
    r = invoke(*base, "--out", tmp_path / "b", "--seed", "8", "--config", cfg, "--level", "instance")
    rep = json.loads((tmp_path / "b" / "report.json").read_text())
    assert (rep["mode"], rep["seed"], rep["level"]) == ("rsm", 8, "instance")


def test_every_shipped_config_loads_by_name(tmp_path):
    from smplus.config import shipped_configs

    names = shipped_configs()
    assert {"rsm", "msm", "rsm+", "msm+", "rsm+_wo_psi", "msm+_wo_psi", "cp", "cp+"} <= set(names)
    for name in names:
        out = tmp_path / name
        r = invoke("transform", "--config", name, "--source", FIXTURE_ANNOTATIONS,
                   "--images", FIXTURE_IMAGES, "--out", out, "--dry-run")
        assert r.exit_code == 0, (name, r.output)
        raw = json.loads((resources.files("smplus") / "configs" / f"{name}.json").read_text())
        params = json.loads((out / "report.json").read_text())["parameters"]
        for key, value in raw.items():
            if not key.startswith("_"):
                got = params[key.replace("-", "_")]
                assert got == value or list(got) == value, (name, key, got, value)
    r = invoke("transform", "--config", "msm++", "--source", FIXTURE_ANNOTATIONS, "--images", FIXTURE_IMAGES,
               "--out", tmp_path / "x", "--dry-run")
    assert r.exit_code == 2 and "config file not found: msm++" in r.output and "msm+, msm+_wo_psi" in r.output


@pytest.mark.parametrize("content, message", [
    ('{"psi-p": 0.4, "colour": 1}', "unknown option 'colour'"),
    ("{not json", "is not valid JSON"),
    ('{"psi-p": 3}', "Invalid value for '--psi-p'"),
])
def test_bad_config_is_a_usage_error(tmp_path, content, message):
    cfg = tmp_path / "c.json"
    cfg.write_text(content)
    r = invoke("transform", "--config", cfg, "--source", FIXTURE_ANNOTATIONS, "--images", FIXTURE_IMAGES,
               "--out", tmp_path / "o", "--dry-run")
    assert r.exit_code == 2 and message in r.output, r.output


def test_jsd_table_script_prints_the_four_rows():
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, os.path.join(root, "scripts", "jsd_table.py"), "--source",
                        FIXTURE_ANNOTATIONS, "--images", FIXTURE_IMAGES], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rows = [line.split("|")[1].strip() for line in r.stdout.splitlines()[2:]]
    assert rows == ["RSM", "RSM+", "MSM", "MSM+"]
    after = {line.split("|")[1].strip(): float(line.split("|")[4]) for line in r.stdout.splitlines()[2:]}
    assert after["MSM+"] < after["MSM"]  # instance level matches better than image level


def test_preview_writes_a_grid_png(tmp_path):
    out = tmp_path / "out"
    assert invoke("transform", "--source", FIXTURE_ANNOTATIONS, "--images", FIXTURE_IMAGES, "--out", out,
                  "--mode", "cp").exit_code == 0
    png = tmp_path / "p.png"
    r = invoke("preview", out, "-n", "3", "-o", png)
    assert r.exit_code == 0, r.output
    import cv2
    grid = cv2.imread(str(png))
    # per image: source | output | its background | smallest instances zoomed, each under a caption
    assert grid is not None and grid.shape[0] == 3 * (18 + 320 + 8) and grid.shape[1] == 4 * 320 + 3 * 8
    green = (grid[..., 1] == 255) & (grid[..., 0] == 0) & (grid[..., 2] == 0)
    assert green[:, 328:648].sum() > 100  # output boxes drawn
    assert green[:, 984:].sum() > 100     # and around the zoomed instances
    background = grid[18:338, 656:976]    # cp: every image is on a new background, shown
    assert background.std() > 20
    r = invoke("preview", tmp_path / "nothing", "-o", png)
    assert r.exit_code == 1 and "report not found" in r.output
