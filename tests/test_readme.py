"""The README's commands run: every ```bash block not marked `<!-- not run: why -->` runs, in order,
in one scratch folder (after the Quick start's `smplus demo demo_out`), with `smplus` and `python`
this checkout's. The example summary matches the demo's real one (numbers aside)."""

import os
import re
import stat
import subprocess
import sys

import pytest

from conftest import ROOT

README = os.path.join(ROOT, "README.md")
BLOCK = re.compile(r"(?:^(<!--[^\n]*-->)\n)?^```(\w+)\n(.*?)^```$", re.S | re.M)


def _blocks(lang):
    with open(README) as f:
        text = f.read()
    return [(m.group(1), m.group(3)) for m in BLOCK.finditer(text) if m.group(2) == lang]


def test_readme_is_a_short_users_document():
    with open(README) as f:
        text = f.read()
    assert len(text.splitlines()) <= 250
    assert not re.search(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{7,40}\b", text), "commit hashes belong in git"
    assert not re.search(r"\b(this round|issue \d+|the team)\b", text, re.I)
    for link in re.findall(r"\]\(((?:docs/)[^)#]+)", text):
        assert os.path.isfile(os.path.join(ROOT, link)), link
    for name in os.listdir(os.path.join(ROOT, "docs")):  # the user documentation under docs/ too
        if name.endswith(".md"):
            with open(os.path.join(ROOT, "docs", name)) as f:
                doc = f.read()
            assert not re.search(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{7,40}\b", doc), name
            assert not re.search(r"\b(this round|previous round|issue \d+|the team)\b", doc, re.I), name
    skipped = [note for note, _ in _blocks("bash") if note]
    assert all(note.startswith("<!-- not run: ") for note in skipped), skipped


@pytest.mark.slow
def test_readme_bash_blocks_run(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, cmd in (("smplus", f'exec "{sys.executable}" -m smplus.cli "$@"'), ("python", f'exec "{sys.executable}" "$@"')):
        shim = bin_dir / name
        shim.write_text(f"#!/bin/sh\n{cmd}\n")
        shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    work = tmp_path / "work"
    work.mkdir()
    for name in ("smplus", "scripts"):  # the README's paths are relative to the checkout
        os.symlink(os.path.join(ROOT, name), work / name)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": ROOT}

    def run(script):
        r = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=work, env=env, capture_output=True,
                           text=True, timeout=900)
        assert r.returncode == 0, f"README block failed:\n{script}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
        return r.stdout

    demo = run("smplus demo demo_out")  # the Quick start, after its install
    ran = 0
    for note, block in _blocks("bash"):
        if not note:
            run(block)
            ran += 1
    assert ran >= 3
    assert os.path.isfile(work / "demo_yolo" / "data.yaml") and os.path.isfile(work / "out_msm+" / "report.json")

    # the README's example summary is the demo's, line by line, numbers aside
    digits = lambda s: re.sub(r"\d+(\.\d+)?", "#", s).strip()  # noqa: E731
    (example,) = [b for _, b in _blocks("text") if b.startswith("wrote ")]
    assert digits(example.replace("demo_out", "OUT")) == digits(demo.replace("demo_out", "OUT"))


def test_readme_covers_every_transform_option_and_mode():
    from smplus.cli import main

    with open(README) as f:
        text = f.read()
    options = [o for p in main.commands["transform"].params for o in p.opts if o.startswith("--")]
    assert [o for o in options if f"`{o}" not in text] == []
    modes = next(p for p in main.commands["transform"].params if p.name == "mode").type.choices
    assert [m for m in modes if f"`--mode {m}`" not in text] == []
    assert "smplus export yolo" in text
