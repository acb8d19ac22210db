"""The Ray executor: render tasks on a Ray cluster, or on a local Ray instance.

    with RayExecutor(address=None, num_cpus=None) as ex:
        for entry in ex.imap_unordered(tasks):   # entry = render_task(task), in completion order
            ...

The driver plans and keeps the journal; Ray runs `render_task` (the one function
every executor runs) once per image on the cluster's CPUs. A task reads its image
from a path every node sees and writes the output image to OUT, so OUT must be
shared too. The journal makes the order of the entries irrelevant: the output is
byte-identical to `--workers 1`.

Ray is an optional extra (`pip install 'smplus[ray]'`); this module imports it only
when an executor is built.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import logging
import os
import signal
import socket
import threading
import time
from typing import Dict, Iterable, Iterator, Optional

from .errors import SmplusError, UsageError
from .task import render_task
from .worker import RAY_INSTALL_HINT, THREAD_ENV, single_threaded_children, worker_init

# Tasks in flight per CPU: enough that a worker finds its next image queued
# while the driver journals the last one, and a bounded window however many
# images the plan has (tasks are submitted as others complete). The cluster's
# CPUs are counted again every WINDOW_SECONDS: an autoscaling cluster grows
# with the demand it sees.
TASKS_PER_CPU = 4
WINDOW_SECONDS = 10.0
# Times a task is run again when its worker process or node dies.
MAX_RETRIES = 3
# How long an interrupted run waits for its cancelled tasks to stop.
CANCEL_SECONDS = 5.0


def _import_ray():
    try:
        import ray
    except ImportError:
        raise UsageError(f"--executor ray needs Ray, which is not installed: {RAY_INSTALL_HINT}") from None
    return ray


def _render_on_worker(task) -> dict:
    """The Ray task: one image, in a worker process set up like a local worker."""
    _worker_setup()
    return render_task(task)


@functools.lru_cache(maxsize=None)
def _worker_setup() -> None:
    """Once per worker process: one thread, matting kernels loaded, as a local worker.

    The thread-count variables of OpenMP/BLAS/numba are read at import, so they
    are set when the process starts (see RayExecutor.__enter__). Unlike a local
    worker, SIGINT keeps its handler: it is how ray.cancel stops a running task.
    """
    worker_init(ignore_sigint=False)


class RayExecutor:
    """Run render tasks on Ray; see the module docstring for the contract.

    address: a running cluster (`HOST:PORT` of `ray start --head`, `auto`, or
      `ray://HOST:PORT` for Ray Client); None starts a local instance for this
      run, unless RAY_ADDRESS names a cluster (as inside `ray job submit`) or
      this process is already connected to one (both are used as they are).
    num_cpus: the size of a local instance (default: every core).
    max_retries: runs of a task again after its worker process or node died.

    On exit (also on Ctrl-C or an error) outstanding tasks are cancelled and a
    local instance is shut down; a cluster we connected to is only disconnected from.
    """

    def __init__(self, address: Optional[str] = None, num_cpus: Optional[int] = None,
                 max_retries: Optional[int] = None):
        max_retries = MAX_RETRIES if max_retries is None else max_retries
        if num_cpus is not None and (isinstance(num_cpus, bool) or not isinstance(num_cpus, int) or num_cpus < 1):
            raise UsageError(f"Ray: num_cpus must be an integer >= 1, got {num_cpus!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise UsageError(f"Ray: max_retries must be an integer >= 0, got {max_retries!r}")
        if num_cpus is not None and address:
            raise UsageError(f"--workers {num_cpus} sizes a local Ray instance; the cluster at {address} uses the CPUs "
                             "its nodes were started with (`ray start --num-cpus N`): drop --workers")
        self.address = address
        _check_client(address or os.environ.get("RAY_ADDRESS"))
        self.num_cpus = num_cpus
        self.max_retries = max_retries
        self._ray = _import_ray()
        self._pending: Dict[object, object] = {}  # ObjectRef -> ImageTask, in flight
        self._connected = False  # we called ray.init, so we call ray.shutdown

    def __enter__(self) -> "RayExecutor":
        ray = self._ray
        self._quiet = _quiet_raylet()
        try:
            runtime_env = {"env_vars": dict.fromkeys(THREAD_ENV, "1")}
            address = self.address or os.environ.get("RAY_ADDRESS")
            if self.address is None and ray.is_initialized():  # the caller's own Ray session: use it as it is
                pass
            elif address:
                _check_reachable(address)
                with _keep_sigterm_handler():
                    try:
                        ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
                    except ConnectionError as e:
                        raise SmplusError(f"--address {address}: could not connect to a Ray cluster ({e})") from None
                self._connected = True
            else:
                # Workers of a local instance inherit these variables from the raylet, so the
                # prestarted workers serve our tasks (a runtime_env would start new ones, ~2 s).
                with single_threaded_children(), _keep_sigterm_handler():
                    ray.init(address="local", num_cpus=self.num_cpus, include_dashboard=False,
                             log_to_driver=False, logging_level=logging.ERROR)
                self._connected = True
                runtime_env = None
        except BaseException:
            self._quiet.close()
            raise
        self._window_size, self._window_time = 0, -WINDOW_SECONDS
        self._remote = ray.remote(_render_on_worker).options(
            num_cpus=1, max_retries=self.max_retries, retry_exceptions=False, runtime_env=runtime_env)
        return self

    def imap_unordered(self, tasks: Iterable) -> Iterator[dict]:
        """render_task(task) for every task, yielded as the tasks complete."""
        ray, pending = self._ray, self._pending
        todo = iter(tasks)
        try:
            while True:
                for task in itertools.islice(todo, self._window() - len(pending)):
                    pending[self._remote.remote(_on_every_node(task))] = task
                if not pending:
                    return
                refs = list(pending)
                ray.wait(refs, num_returns=1)  # block for one, then take every one done by now
                ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
                for ref in ready:
                    yield self._entry(ref, pending.pop(ref))
        finally:
            self._cancel()

    def _window(self) -> int:
        now = time.monotonic()
        if now - self._window_time >= WINDOW_SECONDS:
            cpus = int(self._ray.cluster_resources().get("CPU", 0))
            self._window_size, self._window_time = max(1, cpus) * TASKS_PER_CPU, now
        return self._window_size

    def _entry(self, ref, task) -> dict:
        ray = self._ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as e:  # render_task raised: raise it as a local run does
            if isinstance(e.cause, BaseException):
                raise e.cause from e
            raise
        except ray.exceptions.RayError as e:  # the worker process or its node died, every retry
            raise SmplusError(f"image {task.image['file_name']} (id {task.plan.image_id}): the Ray worker rendering it "
                              f"died {self.max_retries + 1} time(s) ({type(e).__name__}; the Ray logs say why, "
                              "e.g. out of memory); rerun with --resume to render the rest") from None

    def _cancel(self) -> None:
        """Queued tasks never start; running ones are interrupted (their images are rendered again on --resume).

        Interrupted inside native code (numba, OpenCV), a task can end with another
        error than TaskCancelledError; its result is collected so that Ray does not
        log it as an unhandled error.
        """
        ray, refs = self._ray, list(self._pending)
        self._pending.clear()
        for ref in refs:
            ray.cancel(ref)
        done, _ = ray.wait(refs, num_returns=len(refs), timeout=CANCEL_SECONDS) if refs else ([], [])
        for ref in done:
            with contextlib.suppress(Exception):
                ray.get(ref)

    def __exit__(self, *exc) -> bool:
        try:
            self._cancel()
            if self._connected:  # stops a local instance; only disconnects from a cluster
                self._ray.shutdown()
                self._connected = False
        finally:
            self._quiet.close()
        return False


def _on_every_node(task):
    """The task with absolute paths: workers on other nodes do not share the driver's working directory."""
    return dataclasses.replace(task, images_dir=os.path.abspath(task.images_dir),
                               out_dir=os.path.abspath(task.out_dir))


def _check_client(address: Optional[str]) -> None:
    """A ray:// address goes through Ray Client, which needs the ray[client] extra (grpcio)."""
    if address and address.startswith("ray://"):
        try:
            import grpc  # noqa: F401
        except ImportError:
            raise UsageError(f"--address {address} connects through Ray Client, which needs the package "
                             "ray[client]: pip install 'ray[client]' (or give the HOST:PORT of `ray start --head`)") from None


def _check_reachable(address: str) -> None:
    """A HOST:PORT nobody listens on makes ray.init retry for minutes; say so at once."""
    if address == "auto" or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except (OSError, ValueError) as e:
        raise SmplusError(f"--address {address}: no Ray cluster answers there ({e}); start one with "
                          "`ray start --head` and pass the address it prints") from None


def _quiet_raylet() -> contextlib.ExitStack:
    """Ray's driver prints the raylet's error notices ("(raylet) A worker died or was killed ...") to
    stdout whatever log_to_driver says. smplus reports a worker's death itself (and causes some: an
    interrupted run cancels its tasks), so while it runs Ray they are not printed; closing the
    returned stack puts Ray's printer back."""
    import ray._private.worker as ray_worker

    stack = contextlib.ExitStack()
    printer = getattr(ray_worker, "print_to_stdstream", None)
    if printer is None:  # another Ray version: nothing to quiet
        return stack

    @functools.wraps(printer)
    def quiet(data, *args, **kwargs):
        if isinstance(data, dict) and data.get("pid") == "raylet":
            return None
        return printer(data, *args, **kwargs)

    ray_worker.print_to_stdstream = quiet
    stack.callback(setattr, ray_worker, "print_to_stdstream", printer)
    return stack


@contextlib.contextmanager
def _keep_sigterm_handler():
    """ray.init replaces the SIGTERM handler by sys.exit; keep ours (the run stops cleanly on SIGTERM)."""
    saved = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        if saved is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, saved)
