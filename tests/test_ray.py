"""The Ray executor on a local Ray instance (2 CPUs): byte-identical to one local
worker, a bounded window of tasks in flight, a killed worker's task is retried,
Ctrl-C / SIGTERM stop cleanly and --resume completes, clear messages for a wrong
address or options. (Without Ray installed: tests/test_scaleout.py.)"""

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from click.testing import CliRunner

import smplus.ray_executor as ray_executor
from smplus.cli import main
from smplus.coco import load_coco
from smplus.errors import SmplusError, UsageError
from smplus.histogram import load_target
from smplus.pipeline import RunOptions, transform
from smplus.plan import TransformOptions, plan_dataset
from smplus.ray_executor import RayExecutor
from smplus.task import image_tasks

from conftest import FIXTURE_ANNOTATIONS, FIXTURE_IMAGES, ROOT, journal_ids, larger_set, tree

pytestmark = pytest.mark.slow  # every test here starts a Ray instance

SEED = 5
RENDER_TASK = b"ray::_render_on_worker"  # the process title of a Ray worker running our task


@pytest.fixture(scope="module")
def cluster():
    """One local Ray instance for the module (start-up costs seconds); its address for other processes."""
    ray = pytest.importorskip("ray")  # CI installs the `ray` extra (.ci/run)
    sigterm = signal.getsignal(signal.SIGTERM)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    signal.signal(signal.SIGTERM, sigterm)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A set of 18 images and its output from one local worker."""
    tmp = tmp_path_factory.mktemp("set")
    source, images = larger_set(tmp, copies=3)
    out = tmp / "one_worker"
    transform(source, images, str(out), options=TransformOptions(seed=SEED), run=RunOptions(progress=False))
    return source, images, tree(out)


@pytest.fixture(scope="module")
def long_reference(tmp_path_factory):
    """240 images and their one-worker output: long enough that a signal lands mid-run
    (the journal commits every 0.5 s; 18 images can all be done by then)."""
    tmp = tmp_path_factory.mktemp("long")
    source, images = larger_set(tmp, copies=40)
    out = tmp / "one_worker"
    transform(source, images, str(out), options=TransformOptions(seed=SEED), run=RunOptions(progress=False))
    return source, images, tree(out)


def ray_transform(source, images, out):
    """transform() with --executor ray; Ray is already running here, so the executor uses that session."""
    return transform(source, images, str(out), options=TransformOptions(seed=SEED),
                     run=RunOptions(executor="ray", progress=False))


def render_workers():
    """PIDs of this process's Ray workers (children of our raylet) running a render task."""
    stat = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                s = f.read()
        except OSError:
            continue
        stat[int(pid)] = (s[s.index("(") + 1:s.rindex(")")], int(s[s.rindex(")") + 2:].split()[1]))
    raylets = {pid for pid, (comm, ppid) in stat.items() if comm == "raylet" and ppid == os.getpid()}
    found = []
    for pid, (_, ppid) in stat.items():
        if ppid in raylets:
            with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read().startswith(RENDER_TASK):
                    found.append(pid)
    return found


class WorkerKiller(threading.Thread):
    """SIGKILLs `times` Ray workers while they render (a worker process dying mid-task)."""

    def __init__(self, times):
        super().__init__(daemon=True)
        self.times, self.killed, self.environ, self.done = times, [], {}, threading.Event()

    def run(self):
        while len(self.killed) < self.times and not self.done.is_set():
            for pid in render_workers()[:1]:
                with contextlib.suppress(OSError):
                    with open(f"/proc/{pid}/environ", "rb") as f:
                        self.environ = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
                    os.kill(pid, signal.SIGKILL)
                    self.killed.append(pid)
            time.sleep(0.01)


def test_ray_run_is_byte_identical_to_one_local_worker(cluster, reference, tmp_path):
    source, images, expected = reference
    ray_transform(source, images, tmp_path / "ray")
    assert tree(tmp_path / "ray") == expected


def test_tasks_are_pulled_as_entries_come_back(cluster, reference, tmp_path):
    """The executor alone, on a lazy task generator: a bounded window in flight, every image once."""
    source, images, expected = reference
    ds = load_coco(source)
    plans = plan_dataset(ds, load_target(None), TransformOptions(seed=SEED)).images
    out = tmp_path / "out"
    pulled, in_flight, ids = [], [], []

    def tasks():
        for task in image_tasks(ds, plans, range(len(plans)), images, str(out)):
            pulled.append(task)
            yield task

    with RayExecutor() as ex:
        for entry in ex.imap_unordered(tasks()):
            ids.append(entry["image_id"])
            in_flight.append(len(pulled) - len(ids))
    assert sorted(ids) == sorted(p.image_id for p in plans)
    assert max(in_flight) < 2 * ray_executor.TASKS_PER_CPU, "at most TASKS_PER_CPU per CPU (2) in flight"
    assert tree(out) == {k: v for k, v in expected.items() if k.startswith("images/")}


def test_a_killed_worker_is_retried_and_the_run_completes(cluster, reference, tmp_path):
    source, images, expected = reference
    killer = WorkerKiller(times=2)
    killer.start()
    try:
        ray_transform(source, images, tmp_path / "ray")
    finally:
        killer.done.set()
        killer.join()
    assert len(killer.killed) == 2, "two workers must have died mid-run"
    assert tree(tmp_path / "ray") == expected
    # the workers ran single-threaded, like local ones
    assert all(killer.environ.get(k) == b"1" for k in
               (b"OMP_NUM_THREADS", b"OPENBLAS_NUM_THREADS", b"MKL_NUM_THREADS", b"NUMBA_NUM_THREADS"))


def test_a_worker_dying_every_time_fails_naming_the_image(cluster, reference, tmp_path, monkeypatch):
    source, images, _ = reference
    monkeypatch.setattr(ray_executor, "MAX_RETRIES", 0)
    killer = WorkerKiller(times=100)
    killer.start()
    try:
        with pytest.raises(SmplusError, match=r"image \d_\d+\.jpg \(id \d+\): the Ray worker rendering it died 1 time"):
            ray_transform(source, images, tmp_path / "ray")
    finally:
        killer.done.set()
        killer.join()
    assert not (tmp_path / "ray" / "annotations.json").exists()


def session_processes(sid):
    """PIDs still alive in a session (a driver started with start_new_session and its Ray processes)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/stat") as f:
                s = f.read()
            if int(s[s.rindex(")") + 2:].split()[3]) == sid:
                pids.append(int(pid))
    return pids


def interrupted_run(source, images, out, signal_it, address=None, total=240):
    """The CLI with --executor ray on `total` images, signalled once 2 images are journaled; its process."""
    cmd = [sys.executable, "-m", "smplus.cli", "transform", "--source", source, "--images", images,
           "--out", str(out), "--seed", str(SEED), "--executor", "ray"]
    proc = subprocess.Popen(cmd + (["--address", address] if address else []), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(journal_ids(out)) < 2:
        time.sleep(0.01)
    signal_it(proc)
    out_text, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    done = len(journal_ids(out))
    assert 2 <= done < total, "the run must stop midway"
    assert not (out / "annotations.json").exists()
    # one line, no traceback, nothing from Ray's logs
    assert err.strip().splitlines() == [f"Error: interrupted after {done} of {total} images; "
                                        "rerun the same command with --resume to continue"], err
    assert out_text == ""
    return proc


def cluster_is_running():
    import ray

    return ray.is_initialized() and ray.cluster_resources().get("CPU") == 2


def test_ctrl_c_stops_a_local_instance_then_resume_completes(cluster, long_reference, tmp_path):
    source, images, expected = long_reference
    out = tmp_path / "out"
    # what Ctrl-C in a terminal does: SIGINT to the whole foreground process group, Ray's processes included
    proc = interrupted_run(source, images, out, lambda p: os.killpg(p.pid, signal.SIGINT))
    deadline = time.time() + 30
    while session_processes(proc.pid) and time.time() < deadline:
        time.sleep(0.1)
    assert session_processes(proc.pid) == [], "the local instance it started is gone with it"

    # resumed here, on the module's instance (its workers are warm)
    transform(source, images, str(out), options=TransformOptions(seed=SEED),
              run=RunOptions(executor="ray", resume=True, progress=False))
    assert tree(out) == expected


def test_sigterm_stops_a_run_on_a_cluster_and_leaves_the_cluster_running(cluster, long_reference, tmp_path):
    source, images, _ = long_reference
    # ray.init replaces the driver's SIGTERM handler by sys.exit: smplus keeps its own
    interrupted_run(source, images, tmp_path / "out", lambda p: p.send_signal(signal.SIGTERM), address=cluster)
    assert cluster_is_running(), "a cluster we connected to keeps running"


def test_an_address_nobody_listens_on_is_refused_at_once():
    pytest.importorskip("ray")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free once closed
    with pytest.raises(SmplusError, match=rf"--address 127.0.0.1:{port}: no Ray cluster answers there"):
        with RayExecutor(address=f"127.0.0.1:{port}"):
            pass


@pytest.mark.parametrize("kwargs, message", [
    ({"num_cpus": 0}, r"num_cpus must be an integer >= 1, got 0"),
    ({"num_cpus": "2"}, r"num_cpus must be an integer >= 1, got '2'"),
    ({"max_retries": -1}, r"max_retries must be an integer >= 0, got -1"),
    ({"address": "10.0.0.1:6379", "num_cpus": 4}, r"--workers 4 sizes a local Ray instance; the cluster at 10.0.0.1:6379"),
])
def test_bad_options_are_usage_errors(kwargs, message):
    with pytest.raises(UsageError, match=message):
        RayExecutor(**kwargs)


def test_cli_refuses_workers_with_a_cluster_address(tmp_path):
    pytest.importorskip("ray")
    r = CliRunner().invoke(main, ["transform", "--source", FIXTURE_ANNOTATIONS, "--images", FIXTURE_IMAGES,
                                  "--out", str(tmp_path / "o"), "--executor", "ray", "--address", "10.0.0.1:6379",
                                  "--workers", "4"])
    assert r.exit_code == 2
    assert "--workers 4 sizes a local Ray instance; the cluster at 10.0.0.1:6379" in r.output
    assert not (tmp_path / "o").exists()


RAYLET_NOTICE = """
import logging, sys, time
import ray
from ray._private.utils import publish_error_to_driver
from smplus.ray_executor import RayExecutor

def notice():  # what the raylet publishes when a worker dies (an interrupted run kills some)
    w = ray._private.worker.global_worker
    time.sleep(2)  # the driver subscribes to the notices in a thread started by ray.init
    publish_error_to_driver("worker_died", "A worker died or was killed while executing a task", w.gcs_client,
                            job_id=w.current_job_id)
    time.sleep(4)

if sys.argv[1] == "smplus":
    with RayExecutor(num_cpus=1):
        notice()
else:
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    notice()
    ray.shutdown()
"""


def test_the_raylets_notices_never_reach_the_users_stdout(tmp_path):
    """Ray's driver prints "(raylet) A worker died ..." to stdout whatever log_to_driver says
    (plain Ray here, under the same notice); a session smplus runs prints nothing of Ray's."""
    pytest.importorskip("ray")
    script = tmp_path / "notice.py"
    script.write_text(RAYLET_NOTICE)
    out = {}
    for who in ("ray", "smplus"):
        r = subprocess.run([sys.executable, str(script), who], cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT},
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        out[who] = r.stdout
    assert "A worker died or was killed" in out["ray"]
    assert out["smplus"] == ""
