"""--id-offset and --file-prefix: output ids and file names apart from the source's, same pixels;
shards, merge and resume follow them; the defaults keep the source's names."""

import json
import os

import pytest
from click.testing import CliRunner

from smplus.cli import main
from smplus.errors import UsageError
from smplus.naming import OutputNames
from smplus.pipeline import RunOptions, merge, transform
from smplus.plan import TransformOptions

from conftest import FIXTURE_ANNOTATIONS, FIXTURE_IMAGES

OFFSET, PREFIX = 1_000_000, "smplus/sm_"


def _run(out, names=OutputNames(), **run):
    return transform(FIXTURE_ANNOTATIONS, FIXTURE_IMAGES, str(out), options=TransformOptions(seed=3),
                     run=RunOptions(progress=False, **run), names=names)


def _load(out):
    with open(os.path.join(out, "annotations.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    out = tmp_path_factory.mktemp("plain") / "out"
    _run(out)
    return out


def test_offset_and_prefix_rename_ids_and_files_only(plain, tmp_path):
    out = tmp_path / "named"
    r = CliRunner().invoke(main, ["transform", "--source", FIXTURE_ANNOTATIONS, "--images", FIXTURE_IMAGES,
                                  "--out", str(out), "--seed", "3", "--id-offset", str(OFFSET),
                                  "--file-prefix", PREFIX, "--progress", "none"])
    assert r.exit_code == 0, r.output
    a, b = _load(plain), _load(out)
    with open(FIXTURE_ANNOTATIONS) as f:
        source = json.load(f)
    source_ids = {im["id"] for im in source["images"]}
    source_ann_ids = {x["id"] for x in source["annotations"]}
    assert len(a["images"]) == len(b["images"]) > 0 and len(a["annotations"]) == len(b["annotations"]) > 0
    for ia, ib in zip(a["images"], b["images"]):
        assert ib["id"] == ia["id"] + OFFSET and ib["id"] not in source_ids
        assert ib["file_name"] == PREFIX + ia["file_name"]
        assert {k: v for k, v in ib.items() if k not in ("id", "file_name")} == {k: v for k, v in ia.items()
                                                                                   if k not in ("id", "file_name")}
        with open(plain / "images" / ia["file_name"], "rb") as fa, open(out / "images" / ib["file_name"], "rb") as fb:
            assert fa.read() == fb.read()  # same pixels
    for xa, xb in zip(a["annotations"], b["annotations"]):
        assert xb["id"] == xa["id"] + OFFSET and xb["id"] not in source_ann_ids
        assert xb["image_id"] == xa["image_id"] + OFFSET
        assert {k: v for k, v in xb.items() if k not in ("id", "image_id")} == {k: v for k, v in xa.items()
                                                                                   if k not in ("id", "image_id")}
    assert sorted(os.listdir(out / "images")) == ["smplus"]  # nothing under the source's names
    r = CliRunner().invoke(main, ["preview", str(out), "-n", "2", "-o", str(tmp_path / "p.png")])
    assert r.exit_code == 0, r.output  # finds each output image's source despite the offset


def test_defaults_keep_the_source_names(plain):
    data = _load(plain)
    with open(FIXTURE_ANNOTATIONS) as f:
        source = {im["id"]: im["file_name"] for im in json.load(f)["images"]}
    assert {im["id"]: im["file_name"] for im in data["images"]} == source
    assert [x["id"] for x in data["annotations"]] == list(range(1, len(data["annotations"]) + 1))


@pytest.mark.slow
def test_shards_merge_and_resume_follow_the_names(tmp_path):
    names = OutputNames(OFFSET, PREFIX)
    whole = tmp_path / "whole"
    _run(whole, names)
    outs = [tmp_path / f"s{i}" for i in range(2)]
    for i, o in enumerate(outs):
        _run(o, names, shard=(i, 2))
    merged = tmp_path / "merged"
    merge([str(o) for o in outs], str(merged))
    assert (merged / "annotations.json").read_bytes() == (whole / "annotations.json").read_bytes()
    for im in _load(whole)["images"]:
        assert (merged / "images" / im["file_name"]).read_bytes() == (whole / "images" / im["file_name"]).read_bytes()
    _run(whole, names, resume=True)  # every image found under its prefixed name: nothing to redo
    assert (whole / "annotations.json").read_bytes() == (merged / "annotations.json").read_bytes()


@pytest.mark.parametrize("kwargs, message", [
    ({"id_offset": -1}, "--id-offset must be an integer >= 0, got -1"),
    ({"file_prefix": "../x"}, "--file-prefix must be a relative name or folder without '..', e.g. smplus_ or smplus/, got '../x'"),
    ({"file_prefix": "/abs/"}, "--file-prefix must be a relative name or folder without '..'"),
])
def test_bad_names_are_refused(kwargs, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        OutputNames(**kwargs)
