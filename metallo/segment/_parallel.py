"""Folds of a cross-validation trained side by side in worker processes on a CPU.

A CPU run of :func:`~metallo.segment.train` spends part of each thread's time waiting for
the others (the U-Net's convolutions on 256-px tiles do not split evenly over threads). With
``jobs`` processes sharing the threads (:func:`task_threads`), the folds of a cross-validation
use the same cores with less waiting: more optimiser steps per CPU-second and less wall time
than training the folds one after the other (measured in ``benchmarks/segment_parallel.py``).
Each fold is the same seeded training as in turn; its numbers differ from a run in turn only
by the floating-point order of a different thread count (with equal thread counts they are
identical).

Workers are started with ``spawn`` (a fresh interpreter: forking a process whose OpenMP
threads are running can hang), so a script that calls :func:`~metallo.segment.cross_validate`
with ``jobs > 1`` must do so under ``if __name__ == "__main__":``, as for any
:mod:`multiprocessing` code. Progress from the workers reaches the caller's callback.
"""

from __future__ import annotations

import multiprocessing as mp
import queue as queue_module
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import torch

from metallo._progress import ProgressCallback, notify
from metallo.errors import MetalloError

__all__ = ["run_parallel", "task_threads"]

#: The worker's queue for progress messages (set by :func:`_init_worker`).
_PROGRESS: Any = None


def task_threads(n_tasks: int, jobs: int, threads: int | None = None) -> list[int]:
    """Torch threads of each task when ``n_tasks`` run ``jobs`` at a time on ``threads`` (default: this process's).

    Tasks run in waves of ``jobs``; the last, smaller wave shares all the threads among its
    tasks, so that three folds on two cores run as two one-thread folds and then one
    two-thread fold. The count depends only on these three numbers, so a run is as
    reproducible as one in turn.

    Examples
    --------
    >>> task_threads(2, 2, threads=2), task_threads(3, 2, threads=2), task_threads(5, 4, threads=8)
    ([1, 1], [1, 1, 2], [2, 2, 2, 2, 8])
    """
    total = int(threads if threads is not None else torch.get_num_threads())
    jobs = max(1, min(int(jobs), n_tasks))
    out = []
    for i in range(n_tasks):
        wave = min(jobs, n_tasks - (i // jobs) * jobs)
        out.append(max(1, total // wave))
    return out


def _init_worker(progress_queue: Any) -> None:
    global _PROGRESS
    _PROGRESS = progress_queue


def _call(index: int, threads: int, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Run one task in a worker on ``threads`` torch threads; its progress goes to the parent through the queue."""
    torch.set_num_threads(threads)

    def progress(done: int, total: int | None, description: str) -> None:
        if _PROGRESS is not None:
            _PROGRESS.put((index, done, total, description))

    return func(*args, progress=progress, **kwargs)


def run_parallel(tasks: Sequence[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]], *, jobs: int,
                 labels: Sequence[str], progress: ProgressCallback | None = None,
                 threads: int | None = None) -> list[Any]:
    """Run ``func(*args, progress=..., **kwargs)`` for each task in ``jobs`` spawned processes.

    Parameters
    ----------
    tasks : sequence of (func, args, kwargs)
        Module-level callables (they are pickled by name) that accept ``progress=``.
    jobs : int
        Worker processes (at most one per task).
    labels : sequence of str
        A name per task for progress and errors (e.g. ``"fold 1"``).
    progress : callable, optional
        Receives ``(sum of done, sum of totals, description)`` over the tasks that have
        reported, the description naming the task that reported last.
    threads : int, optional
        Torch threads shared out among the workers (default: this process's; see
        :func:`task_threads`).

    Returns
    -------
    list
        The tasks' results, in task order.

    Raises
    ------
    MetalloError
        A task's own MetalloError, with its label in front; a worker that died (out of
        memory, killed, a script without the ``__main__`` guard) as a MetalloError naming the
        task. Any other exception is re-raised as it came, after the other workers have been
        stopped.
    """
    jobs = max(1, min(int(jobs), len(tasks)))
    ctx = mp.get_context("spawn")
    progress_queue = ctx.Queue()
    done: dict[int, tuple[int, int | None]] = {}
    results: list[Any] = [None] * len(tasks)

    def drain() -> None:
        while True:
            try:
                index, d, total, description = progress_queue.get_nowait()
            except (queue_module.Empty, EOFError, OSError):
                return
            done[index] = (d, total)
            totals = [t for _, t in done.values()]
            # Counted work adds up over the tasks (one bar); a stage without a count stays a line.
            notify(progress, sum(v for v, _ in done.values()),
                   None if total is None or None in totals else int(sum(t for t in totals if t is not None)),
                   f"{labels[index]}: {description} ({jobs} side by side)")

    shares = task_threads(len(tasks), jobs, threads)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker,
                             initargs=(progress_queue,)) as pool:
        pending: dict[Future[Any], int] = {
            pool.submit(_call, i, shares[i], func, args, kwargs): i for i, (func, args, kwargs) in enumerate(tasks)}
        try:
            while pending:
                finished, _ = wait(list(pending), timeout=0.5, return_when=FIRST_COMPLETED)
                drain()
                for fut in finished:
                    i = pending.pop(fut)
                    try:
                        results[i] = fut.result()
                    except MetalloError as exc:
                        raise type(exc)(f"{labels[i]}: {exc}") from exc
                    except BrokenProcessPool as exc:
                        raise MetalloError(
                            f"{labels[i]}: its worker process ended abruptly (out of memory, killed, or the calling "
                            "script could not be started again in the worker: call it from a .py file under "
                            "'if __name__ == \"__main__\":'); jobs=1 trains the folds in turn") from exc
        except BaseException:
            # A failed task or Ctrl-C stops the others now rather than after their training.
            for proc in list((getattr(pool, "_processes", None) or {}).values()):
                proc.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            drain()
    progress_queue.close()
    return results
