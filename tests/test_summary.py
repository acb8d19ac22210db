"""The end-of-run summary says what its numbers mean; report.json states the scale the output is matched at."""

import json
import re

from click.testing import CliRunner

from smplus.cli import main

from conftest import FIXTURE_ANNOTATIONS, FIXTURE_IMAGES


def test_summary_explains_the_jsd_the_drops_and_the_image_sizes(tmp_path):
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["transform", "--source", FIXTURE_ANNOTATIONS, "--images", FIXTURE_IMAGES,
                                  "--out", str(out), "--progress", "none"])
    assert r.exit_code == 0, r.output
    report = json.loads((out / "report.json").read_text())
    data = json.loads((out / "annotations.json").read_text())
    j = report["jsd"]
    m = re.search(r"^sizes (match the target|are further from the target than chance): JSD to target ([\d.]+), "
                  r"from ([\d.]+) in the source \(random draws of the same size from the target: ([\d.]+)\)$", r.output, re.M)
    assert m, r.output
    assert (float(m.group(2)), float(m.group(3)), float(m.group(4))) == tuple(
        round(v, 4) for v in (j["after"], j["before"], j["sampling_noise"]))
    assert m.group(1) == ("match the target" if j["after"] <= 2 * j["sampling_noise"] else
                          "are further from the target than chance")
    assert f"to {out}\n" in r.output  # the first line says what was written, and where
    dropped = report["counts"]["dropped"]
    if dropped:
        assert "dropped instances: " + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in dropped.items()) in r.output
    widths = sorted(im["width"] for im in data["images"])
    heights = sorted(im["height"] for im in data["images"])
    sizes = report["image_sizes"]
    assert sizes == {"count": len(widths),
                     "width": {"min": widths[0], "median": widths[len(widths) // 2], "max": widths[-1]},
                     "height": {"min": heights[0], "median": heights[len(heights) // 2], "max": heights[-1]}}
    assert (f"matched at the images' own size: median {widths[len(widths) // 2]}x{heights[len(heights) // 2]} px "
            f"(min {widths[0]}x{heights[0]}, max {widths[-1]}x{heights[-1]})") in r.output
