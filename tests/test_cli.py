import json
import os

import click
import pytest
from click.testing import CliRunner

from conftest import FIXTURE_ANNOTATIONS, FIXTURE_IMAGES
from smplus.cli import main


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
    out.mkdir()
    (out / "keep.txt").write_text("x")
    args = ["transform", "--source", FIXTURE_ANNOTATIONS, "--images", FIXTURE_IMAGES, "--out", out, "--dry-run"]
    r = invoke(*args)
    assert r.exit_code == 1
    assert r.output.strip() == f"Error: output folder {out} is not empty; pass --overwrite to replace it " \
                               "or --resume to continue an interrupted run"
    assert invoke(*args, "--overwrite").exit_code == 0


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
