"""Worker process set-up shared by the local and the Ray executors (and SMPlusDataset's
loader workers): one thread per library, Ctrl-C left to the driver, matting kernels loaded."""

from __future__ import annotations

import contextlib
import os
import signal

RAY_INSTALL_HINT = "pip install 'smplus[ray]'"

# Thread pools of the libraries under each worker. Every process gets one
# thread: N processes x default threads oversubscribe the cores, and OpenMP's
# spinning threads then make 2 workers 15x slower than 1.
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


@contextlib.contextmanager
def single_threaded_children():
    """Spawned children read these at import, before any of their code runs."""
    saved = {k: os.environ.get(k) for k in THREAD_ENV}
    os.environ.update({k: "1" for k in THREAD_ENV})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def worker_init(ignore_sigint: bool = True) -> None:
    """Once per worker process: Ctrl-C is the driver's (`ignore_sigint`), one thread, matting kernels loaded."""
    import cv2

    if ignore_sigint:  # the driver handles Ctrl-C and SIGTERM (to the whole group, as SLURM preempts) and stops the workers
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    cv2.setNumThreads(1)  # one image per process; threads would only contend
    from .matting import warm_up

    warm_up()  # numba's kernels load from its on-disk cache (compiled, with a one-line notice, if absent)
