"""Executors: map render_task over image tasks and yield the entries, in any order.

The contract every executor implements (local here; Ray in smplus.ray_executor):

    with Executor(workers, ...) as ex:              # starts workers; stops them on exit
                                                    # (RayExecutor(workers=N, address=ADDR|None))
        for entry in ex.imap_unordered(tasks):      # tasks: iterable of picklable ImageTask
            ...                                     # entry = render_task(task), in any order

- `render_task` (smplus.task) is the only function an executor runs (the
  local ones run its two halves, `render` and `Rendered.write`, overlapped).
- Tasks may be a lazy generator; an executor pulls only a few per worker
  ahead (PREFETCH; the in-process one, one), so memory does not grow with the set.
- A worker that dies: the local executor raises SmplusError naming the image
  it was on, within a second (never a hang); Ray retries the task.
- An exception raised by render_task (OutputError: OUT is not writable) is
  raised in the driver as is.
- Leaving the `with` block early (KeyboardInterrupt, an error) stops the
  workers at once; the journal makes `--resume` continue.
"""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import queue
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import wait
from typing import Iterable, Iterator, Optional

from .errors import SmplusError, UsageError
from .task import ImageTask, render
from .worker import single_threaded_children, worker_init

EXECUTORS = ("local", "ray")
PREFETCH = 3  # tasks per local worker: one being written, one rendered, the next one waiting
RENDERED = "rendered"  # a worker's notice: its oldest unrendered task is rendered (its write may be pending)


def make_executor(kind: str = "local", workers: int = 1, address: Optional[str] = None):
    """The executor for `--executor KIND`: local (in-process or processes) or Ray."""
    if kind == "ray":  # without Ray installed, RayExecutor says how to install it (UsageError)
        from .ray_executor import RayExecutor

        # --workers N: a local Ray instance of N CPUs; the default (1): every core, or the cluster's
        return RayExecutor(address=address, num_cpus=workers if workers > 1 else None)
    if kind != "local":
        raise UsageError(f"--executor must be one of {', '.join(EXECUTORS)}, got {kind!r}")
    if address is not None:
        raise UsageError("--address goes with --executor ray")
    return InProcess() if workers < 2 else LocalProcesses(workers)


class InProcess:
    """One worker: render_task in the driver's own process, on one OpenCV thread like a worker
    process (OpenCV's pool would make `--workers 1` use every core, and oversubscribe a 1-CPU
    allocation); the caller's setting is restored on exit."""

    def __enter__(self) -> "InProcess":
        import cv2

        self._threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        return self

    def __exit__(self, *exc) -> None:
        import cv2

        cv2.setNumThreads(self._threads)

    def imap_unordered(self, tasks: Iterable[ImageTask]) -> Iterator[dict]:
        """render_task's two halves, overlapped: each image is written (fsync'd: a wait on the
        disk, not CPU) in a thread while the next one renders. An entry is yielded, and so
        journaled, only once its image is on disk; one image at a time waits to be written."""
        with ThreadPoolExecutor(1, thread_name_prefix="smplus-write") as writer:
            writing = None
            for task in tasks:
                done = render(task)
                if writing is not None:
                    yield writing.result()  # raises the write's OutputError
                writing = writer.submit(done.write)
            if writing is not None:
                yield writing.result()


class LocalProcesses:
    """N spawned worker processes, each fed through its own pipe, PREFETCH tasks ahead.

    Spawned, not forked: libgomp (used by numba/OpenCV) aborts in a forked
    child. Each worker loads the matting kernels once (numba's on-disk cache),
    started before the annotations load so that this overlaps the driver's
    loading and planning. The driver watches the pipes
    and the processes together, so a worker killed by the OOM killer or a
    segfault is seen at once, with the task it was on. A worker finds its next
    task waiting when it sends a result (a reader thread drains its pipe, so
    neither side ever blocks on a full one): one task at a time left it idle
    while the driver journaled the result and built the next task. Like the
    in-process executor, a worker writes each image in a thread while it
    renders the next, and sends the entry once the image is on disk; it says
    when it has rendered a task, so a death names the image it was on.
    """

    def __init__(self, workers: int):
        self.workers = workers
        self._procs: list = []
        self._conns: list = []

    def __enter__(self) -> "LocalProcesses":
        ctx = multiprocessing.get_context("spawn")
        with single_threaded_children():
            for _ in range(self.workers):
                here, there = ctx.Pipe()
                proc = ctx.Process(target=_worker_main, args=(there,), daemon=True)
                proc.start()
                there.close()
                self._procs.append(proc)
                self._conns.append(here)
        return self

    def cap(self, n: int) -> None:
        """At most `n` workers (the images to render): the others are stopped before any task."""
        while self.workers > max(1, n):
            self.workers -= 1
            conn, proc = self._conns.pop(), self._procs.pop()
            with contextlib.suppress(OSError):
                conn.send(None)
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
            conn.close()

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:  # done: let the workers finish their loop
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.send(None)
            for proc in self._procs:
                proc.join(timeout=5)
        for proc in self._procs:
            if proc.is_alive():
                proc.kill()
            proc.join()
        for conn in self._conns:
            conn.close()

    def imap_unordered(self, tasks: Iterable[ImageTask]) -> Iterator[dict]:
        tasks = _Dealer(tasks, self.workers)
        on = [collections.deque() for _ in range(self.workers)]  # each worker's tasks not yet replied, in order
        rendered = [0] * self.workers  # how many of them it has rendered (their writes pending)
        exhausted = False
        while True:
            for _ in range(PREFETCH):
                for k in range(self.workers):
                    if exhausted or len(on[k]) >= PREFETCH:
                        continue
                    task = tasks.next_for(k)
                    if task is None:
                        exhausted = True
                        break
                    on[k].append(task)
                    try:
                        self._conns[k].send(task)
                    except OSError:  # it died
                        raise self._died(k, on[k], rendered[k]) from None
            busy = [k for k in range(self.workers) if on[k]]
            if not busy:
                return
            ready = wait([self._conns[k] for k in busy] + [self._procs[k].sentinel for k in busy])
            for k in busy:
                reply = None
                if self._conns[k] in ready:
                    with contextlib.suppress(EOFError, OSError):  # EOF: it died; its exit code says how
                        reply = self._conns[k].recv()
                if reply == RENDERED:
                    rendered[k] += 1
                elif reply is not None:
                    ok, value = reply
                    if not ok:
                        raise value
                    on[k].popleft()
                    rendered[k] -= 1
                    yield value
                elif self._conns[k] in ready or self._procs[k].sentinel in ready:
                    raise self._died(k, on[k], rendered[k])

    def _died(self, k: int, tasks, rendered: int) -> SmplusError:
        """The error for worker k's death, given its `tasks` not yet replied and how many of them it
        has `rendered`. Their writes go oldest first: with two rendered it waits for the first one's
        write (it rendered the second meanwhile); with all rendered it is writing the first one;
        otherwise it was rendering the first one not rendered."""
        self._procs[k].join()
        writing = rendered >= min(len(tasks), 2)
        return SmplusError(_death_message(self._procs[k].exitcode, tasks[0] if writing else tasks[rendered],
                                          "writing" if writing else "rendering"))


class _Dealer:
    """The tasks, dealt so that a worker gets the images drawing the background it was last given
    (it keeps that background erased: render.ERASED) while a few tasks ahead hold one; otherwise
    the first task no other worker is on the background of. Only the order changes, never an output."""

    AHEAD = 4  # tasks looked ahead per worker

    def __init__(self, tasks: Iterable[ImageTask], workers: int):
        self._tasks = iter(tasks)
        self._ahead: collections.deque = collections.deque()
        self._size = self.AHEAD * workers
        self._last: list = [None] * workers

    def next_for(self, k: int) -> Optional[ImageTask]:
        while len(self._ahead) < self._size:
            task = next(self._tasks, None)
            if task is None:
                break
            self._ahead.append(task)
        if not self._ahead:
            return None
        backgrounds = [_background_of(t) for t in self._ahead]
        mine = self._last[k]
        others = {b for j, b in enumerate(self._last) if j != k and b is not None}
        i = next((i for i, b in enumerate(backgrounds) if b is not None and b == mine), None)
        if i is None:
            i = next((i for i, b in enumerate(backgrounds) if b is None or b not in others), 0)
        pick = self._ahead[i]
        del self._ahead[i]
        self._last[k] = backgrounds[i]
        return pick


def _background_of(task: ImageTask) -> Optional[int]:
    return task.plan.background_image_id if task.plan.background == "new" else None


def _drain(conn, inbox: queue.Queue) -> None:
    """A worker's reader: tasks from the driver into `inbox` as they come (None at the end)."""
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            task = None
        inbox.put(task)
        if task is None:
            return


def _death_message(exitcode: Optional[int], task: ImageTask, doing: str = "rendering") -> str:
    if exitcode is not None and -exitcode in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # stopped, not failed
        return (f"interrupted: a worker process was stopped by {signal.Signals(-exitcode).name} while {doing} image "
                f"{task.plan.image_id} ({task.image['file_name']}); rerun the same command with --resume to continue")
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        how = f"was killed by {name}" + (" (the out-of-memory killer sends it)" if name == "SIGKILL" else "")
    else:
        how = f"exited with code {exitcode}"
    return (f"a worker process {how} while {doing} image {task.plan.image_id} ({task.image['file_name']}); "
            "rerun the same command with --resume to continue (fewer --workers if memory is short)")


def _worker_main(conn) -> None:
    worker_init()
    inbox: queue.Queue = queue.Queue()
    threading.Thread(target=_drain, args=(conn, inbox), daemon=True).start()
    with ThreadPoolExecutor(1, thread_name_prefix="smplus-write") as writer:
        writing = None  # the previous image's write
        while True:
            try:
                task = inbox.get_nowait()
            except queue.Empty:  # nothing to render meanwhile: the driver waits for this entry
                _reply(conn, writing)
                writing = None
                task = inbox.get()
            if task is None:  # done, or the driver is gone
                _reply(conn, writing)
                return
            try:
                done = render(task)
            except Exception as e:  # raised again in the driver, after the previous image's entry
                _reply(conn, writing)
                _send(conn, (False, e))
                writing = None
                continue
            conn.send(RENDERED)
            _reply(conn, writing)
            writing = writer.submit(done.write)


def _reply(conn, writing) -> None:
    """Send the entry of the image `writing` (a future of Rendered.write, or None: nothing to
    send) once the image is on disk, or the write's error."""
    if writing is not None:
        try:
            reply = (True, writing.result())
        except Exception as e:
            reply = (False, e)
        _send(conn, reply)


def _send(conn, reply) -> None:
    try:
        conn.send(reply)
    except Exception:  # an exception that does not pickle: its text does
        conn.send((False, SmplusError(f"{type(reply[1]).__name__}: {reply[1]}")))
