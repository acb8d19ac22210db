"""The README's Quick start, then its test command, in a fresh virtualenv: the CLI must keep working.

`pip install .` + `smplus demo` + `pip install -e .` once broke every later `smplus` command:
numba cached its kernels in site-packages/smplus/__pycache__, pip uninstall left them
behind, and the leftover folder imported as a namespace package that shadowed the
editable install. pytest imports smplus from the repo, so only a real install shows it.

Offline and quick: --no-deps --no-build-isolation, with this interpreter's packages
(numpy, numba, setuptools, ...) visible to the new venv through a .pth line.
"""

import os
import shutil
import subprocess
import sys
import sysconfig

import pytest

from conftest import ROOT


def _run(cmd, env, cwd):
    r = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} exited {r.returncode}:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r


def _files(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)


@pytest.mark.slow
def test_quick_start_then_editable_install_keeps_a_working_cli(tmp_path):
    # a copy of the project: an in-tree build must not leave build/ or *.egg-info in the repo
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(os.path.join(ROOT, "pyproject.toml"), project)
    shutil.copy(os.path.join(ROOT, "README.md"), project)
    shutil.copytree(os.path.join(ROOT, "smplus"), project / "smplus", ignore=shutil.ignore_patterns("__pycache__"))

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(site, "_smplus_test_deps.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")  # the project venv's packages, after the new venv's own

    cache = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "PYTHONPATH", "VIRTUAL_ENV")}
    env.update(XDG_CACHE_HOME=str(cache), PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    pip = [sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", "--no-build-isolation",
           "--no-index"]
    smplus = str(venv / "bin" / "smplus")
    work = tmp_path / "work"
    work.mkdir()

    # Quick start: install, then the demo
    _run(pip + [str(project)], env, work)
    installed = os.path.join(site, "smplus")
    before = _files(installed)
    r = _run([smplus, "demo", "demo_out"], env, work)
    assert "wrote" in r.stdout
    # numba's cache went to the user's cache folder, nothing into the installed package
    assert any(f.endswith(".nbi") for f in _files(cache / "smplus" / "numba"))
    assert [f for f in _files(installed) if f not in before and not f.endswith(".pyc")] == []

    # the test command's install: replaces the regular install by an editable one
    _run(pip + ["-e", str(project)], env, work)
    assert not os.path.exists(installed), f"pip uninstall left {_files(installed)} behind"
    r = _run([smplus, "--version"], env, work)
    assert "0.1.0" in r.stdout
    r = _run([smplus, "demo", "demo_out2"], env, work)
    assert "wrote" in r.stdout
    assert os.path.isfile(work / "demo_out2" / "annotations.json")


def _cache_dir_in(env):
    code = "from smplus.matting import cache_dir, _premultiplied as k; print(cache_dir()); print(k._cache._cache_path)"
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    return r.stdout.split()


@pytest.mark.parametrize("numba_dir, xdg, expected", [
    ("N", "X", "N"),                   # NUMBA_CACHE_DIR wins, as numba's own setting
    (None, "X", "X/smplus/numba"),     # else the XDG cache folder
    (None, None, "H/.cache/smplus/numba"),
])
def test_kernels_cache_in_the_user_cache_folder(tmp_path, numba_dir, xdg, expected):
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME")}
    env.update(HOME=str(tmp_path / "H"), PYTHONPATH=ROOT)
    if numba_dir:
        env["NUMBA_CACHE_DIR"] = str(tmp_path / numba_dir)
    if xdg:
        env["XDG_CACHE_HOME"] = str(tmp_path / xdg)
    folder, kernel_cache = _cache_dir_in(env)
    assert folder == str(tmp_path / expected)
    assert kernel_cache.startswith(folder + os.sep)  # where numba really writes, not smplus/__pycache__
