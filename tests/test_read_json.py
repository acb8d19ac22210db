"""Reading JSON: small files through orjson, large ones through json (less peak memory); the same
objects and the same one-line errors either way, and a dry run byte-identical whichever reads."""

import codecs
import gc
import json

import pytest

import smplus.coco as coco
from smplus.errors import SmplusError
from smplus.pipeline import RunOptions, transform

from conftest import FIXTURE_ANNOTATIONS, FIXTURE_IMAGES

CASES = [
    ("fixture", open(FIXTURE_ANNOTATIONS, "rb").read()),
    ("non-ASCII text", '{"name": "café ☕", "id": 1}'.encode()),
    ("UTF-16 with a BOM", codecs.BOM_UTF16_LE + '{"name": "café", "ids": [1, 2]}'.encode("utf-16-le")),
    ("NaN and Infinity", b'{"area": NaN, "bbox": [Infinity, -Infinity, 1.5, 2]}'),
    ("integer beyond a double", b'{"id": 1' + b"0" * 400 + b'}'),
    ("duplicate keys: the last wins", b'{"id": 1, "id": 2}'),
    ("floats", b'[0.1, 1e22, 2.5e-3, -0.0, 123.456789012345678, 5e-324]'),
]


@pytest.fixture
def large(monkeypatch):
    """Every file counts as large: read by json."""
    monkeypatch.setattr(coco, "ORJSON_MAX_BYTES", -1)


def _read(tmp_path, data):
    path = tmp_path / "f.json"
    path.write_bytes(data)
    return coco.read_json(str(path), "source annotations")


@pytest.mark.parametrize("name,data", CASES, ids=[c[0] for c in CASES])
def test_both_readers_give_the_objects_json_gives(tmp_path, monkeypatch, name, data):
    expected = json.loads(data)
    small = _read(tmp_path, data)
    monkeypatch.setattr(coco, "ORJSON_MAX_BYTES", -1)
    big = _read(tmp_path, data)
    # repr tells NaN from NaN-less and -0.0 from 0.0, which == does not
    assert repr(small) == repr(expected) and repr(big) == repr(expected)
    assert gc.isenabled()


def test_integers_beyond_64_bits_are_exact_only_in_a_large_file(tmp_path, monkeypatch):
    """The one difference: orjson reads an integer between 2**64 and 1e308 as a float; json exactly.
    Either way an id that large is refused in one line."""
    data = b'{"id": 1180591620717411303424}'
    assert _read(tmp_path, data) == {"id": 1.1805916207174113e+21}
    monkeypatch.setattr(coco, "ORJSON_MAX_BYTES", -1)
    assert _read(tmp_path, data) == {"id": 1180591620717411303424}
    with pytest.raises(SmplusError, match=r"'id' 1180591620717411303424 is beyond \+-\(2\*\*53 - 1\)"):
        coco.check_id(_read(tmp_path, data)["id"], "images[0]")


@pytest.mark.parametrize("data,needle", [
    (b'{"images": [1, 2,, 3]}', "is not valid JSON at line 1 column 18"),
    (b'{"name": "\xff\xfe\xfa"}', "is not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "is nested too deeply to be a COCO file"),
])
def test_a_large_file_that_is_not_json_is_one_line(tmp_path, large, data, needle):
    with pytest.raises(SmplusError) as e:
        _read(tmp_path, data)
    assert needle in str(e.value) and str(tmp_path / "f.json") in str(e.value)
    assert "\n" not in str(e.value)
    assert gc.isenabled()


def test_the_dry_run_is_the_same_whichever_reader(tmp_path, monkeypatch):
    outputs = []
    for limit in (coco.ORJSON_MAX_BYTES, -1):
        monkeypatch.setattr(coco, "ORJSON_MAX_BYTES", limit)
        out = tmp_path / f"out{limit}"
        transform(FIXTURE_ANNOTATIONS, FIXTURE_IMAGES, str(out), run=RunOptions(dry_run=True, progress=False))
        outputs.append([(out / f).read_bytes() for f in ("annotations.json", "report.json")])
        assert gc.isenabled()  # paused only while loading, planning and assembling
    assert outputs[0] == outputs[1]
    assert json.loads(outputs[0][1])["counts"]["instances_in"] > 0

