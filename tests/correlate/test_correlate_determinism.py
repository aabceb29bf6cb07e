"""register() is reproducible: equal inputs and seed give bit-identical transforms."""

from __future__ import annotations

from contextlib import contextmanager

import cv2
import numpy as np
import pytest
import SimpleITK as sitk
from correlate_helpers import make_pair, tre_px

from metallo.correlate import register


@pytest.fixture(scope="module")
def small_pair():
    return make_pair(3, moving_shape=(120, 120), fixed_shape=(190, 190))


def _grid_points(pair) -> np.ndarray:
    g = pair.moving
    ys, xs = np.meshgrid(g.y.values[::5], g.x.values[::5], indexing="ij")
    return np.stack([ys.ravel(), xs.ravel()], 1)


@pytest.mark.parametrize(
    ("method", "deformable", "max_median_px"),
    # The SIFT affine alone leaves a 5.5 px median error on this pair.
    [("sift+bspline", "blocks+mi", 1.0), ("sift+bspline", "mi", 2.0), ("affine+bspline", "blocks+mi", 1.5)],
)
def test_register_twice_gives_identical_transform(small_pair, method, deformable, max_median_px):
    # seed=0 (the default) is SimpleITK's "seed from the wall clock": it must not reach ITK.
    kw = {"method": method, "deformable": deformable, "levels": 2, "iterations": 30, "grid_um": 15.0}
    first = register(small_pair.fixed, small_pair.moving, **kw)
    second = register(small_pair.fixed, small_pair.moving, **kw)
    pts = _grid_points(small_pair)
    np.testing.assert_array_equal(first.transform_points(pts), second.transform_points(pts))
    assert first.quality["initial"] == ("sift" if method.startswith("sift") else "intensity")
    # Reproducible and still right: the known deformation is recovered.
    assert np.median(tre_px(first, small_pair)) < max_median_px


def test_register_does_not_depend_on_thread_counts(small_pair):
    kw = {"method": "sift+bspline", "deformable": "mi", "levels": 2, "iterations": 30, "grid_um": 15.0}
    previous = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads(), cv2.getNumThreads()
    results = []
    try:
        for threads in (1, 2, 4):
            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
            cv2.setNumThreads(threads)
            results.append(register(small_pair.fixed, small_pair.moving, **kw))
            # The caller's setting is left as it was.
            assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == threads
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(previous[0])
        cv2.setNumThreads(previous[1])
    pts = _grid_points(small_pair)
    for other in results[1:]:
        np.testing.assert_array_equal(results[0].transform_points(pts), other.transform_points(pts))


def test_both_directions_side_by_side_equal_one_after_the_other(small_pair, monkeypatch):
    """``both_ways`` runs its two registrations in parallel threads: same transform as in turn."""
    from metallo.correlate import _register

    parallel = register(small_pair.fixed, small_pair.moving)
    monkeypatch.setattr(_register, "_directions_in_parallel", lambda fp, mp: False)
    serial = register(small_pair.fixed, small_pair.moving)
    pts = _grid_points(small_pair)
    np.testing.assert_array_equal(parallel.transform_points(pts), serial.transform_points(pts))
    assert parallel.quality["both_ways"]["weights"] == serial.quality["both_ways"]["weights"]
    assert np.median(tre_px(parallel, small_pair)) < 1.0


def test_parallel_directions_keep_their_own_warnings(monkeypatch):
    """Warnings raised in each direction's thread reach that direction, none lost or swapped."""
    import threading
    import warnings

    from metallo.correlate import _register

    barrier = threading.Barrier(2, timeout=10)

    def fake_register(fixed, moving, **opts):
        barrier.wait()  # both threads are inside at once
        for k in range(20):
            warnings.warn(f"{opts['tag']} {k}", UserWarning, stacklevel=1)
        return opts["tag"]

    monkeypatch.setattr(_register, "register", fake_register)
    jobs = {"forward": (None, None, {"tag": "F"}), "reverse": (None, None, {"tag": "R"})}
    runs = _register._run_directions(jobs, parallel=True)
    assert runs["forward"][0] == "F" and runs["reverse"][0] == "R"
    assert [str(w.message) for w in runs["forward"][1]] == [f"F {k}" for k in range(20)]
    assert [str(w.message) for w in runs["reverse"][1]] == [f"R {k}" for k in range(20)]


def _blas_threads() -> int:
    """The most threads any loaded BLAS may use (OpenCV's bundled OpenBLAS is built with one)."""
    from threadpoolctl import threadpool_info

    return max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")


def test_blas_runs_on_one_thread_inside_register_and_is_restored(small_pair, monkeypatch):
    """Inside a registration BLAS has one thread, whatever the caller set; the caller's count is back afterwards,
    so the transform does not depend on it."""
    from threadpoolctl import threadpool_limits

    from metallo.correlate import _register

    seen = []
    original = _register._both_ways_auto

    def spy(*args, **kwargs):
        seen.append(_blas_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(_register, "_both_ways_auto", spy)
    results = []
    for threads in (1, 2):
        with threadpool_limits(limits=threads, user_api="blas"):
            before = _blas_threads()  # 2 where the machine has 2 cores
            results.append(register(small_pair.fixed, small_pair.moving))
            assert _blas_threads() == before
    assert seen == [1, 1]
    pts = _grid_points(small_pair)
    np.testing.assert_array_equal(results[0].transform_points(pts), results[1].transform_points(pts))


def _itk_threads() -> int:
    return sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()


@contextmanager
def _caller_itk_threads(n: int):
    previous = _itk_threads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(n)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(previous)


@contextmanager
def _caller_blas_threads(n: int):
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n, user_api="blas"):
        yield


@pytest.mark.parametrize("library", ["itk", "blas"])
def test_one_thread_settings_are_counted_across_threads(library):
    """Two registrations inside at once: the library stays on one thread until the last one
    leaves, then the caller's thread count is back."""
    import threading

    from metallo.correlate import _register

    setting, caller, count = {
        "itk": (_register._single_threaded_itk, _caller_itk_threads, _itk_threads),
        "blas": (_register._single_threaded_blas, _caller_blas_threads, _blas_threads),
    }[library]
    with caller(2):
        before = count()  # 2 where the machine has 2 cores
        first_in, second_out = threading.Event(), threading.Event()
        seen = []

        def second():
            first_in.wait(10)
            with setting():
                seen.append(count())
            second_out.set()

        t = threading.Thread(target=second)
        t.start()
        with setting():
            first_in.set()
            second_out.wait(10)
            seen.append(count())  # the other has left; this one is still inside
        t.join(10)
        assert seen == [1, 1]
        assert count() == before
