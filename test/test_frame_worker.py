"""The node's frame path in-process (no DDS, no clock): stride, newest-frame-wins, exact counts.

The model is a fake that blocks on a threading.Event, so the test decides when it finishes and
every count is exact, however fast or loaded the machine is.
"""
import threading

import pytest

from face_perception.messages.images import ImageMessageError
from face_perception.ros.frame_accounting import FrameAccounting
from face_perception.ros.frame_worker import FrameWorker

FRAMES = 300
PERIOD_NS = 33_333_333
WAIT = 60  # seconds; only reached when the code under test is broken


class BlockingModel:
    """Processes items in order of arrival, each only once ``release`` is set."""

    def __init__(self, acc: FrameAccounting, fail_on=()):
        self.acc = acc
        self.release = threading.Event()
        self.started = threading.Event()  # the worker took its first item
        self.done = []
        self.fail_on = dict(fail_on)
        self._cond = threading.Condition()

    def __call__(self, item):
        self.started.set()
        assert self.release.wait(WAIT), "test never released the model"
        with self._cond:
            self.done.append(item)
            self._cond.notify_all()
        if item in self.fail_on:
            raise self.fail_on[item]
        self.acc.on_processed(0.0)

    def wait_done(self, count: int) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.done) >= count, WAIT)


@pytest.fixture
def run():
    workers = []

    def make(stride=1, fail_on=()):
        acc = FrameAccounting()
        model = BlockingModel(acc, fail_on)
        reports = []
        worker = FrameWorker(model, acc, stride=lambda: stride,
                             report=lambda exc, bad: reports.append((type(exc), bad)))
        worker.start()
        workers.append(worker)
        return worker, model, acc, reports
    yield make
    for w in workers:
        w.stop()


def stamp(i: int) -> int:
    return 10**12 + i * PERIOD_NS


def test_a_flood_behind_a_busy_model_processes_first_and_newest_and_counts_the_rest_stale(run):
    worker, model, acc, _ = run()
    assert worker.push(stamp(0), 0)
    assert model.started.wait(WAIT)  # frame 0 is in the model, which blocks
    for i in range(1, FRAMES):
        assert worker.push(stamp(i), i)
    model.release.set()
    assert model.wait_done(2)
    worker.stop()  # joins the thread: nothing is processed after this
    assert model.done == [0, FRAMES - 1]
    snap = acc.snapshot()
    assert (snap["received"], snap["processed"], snap["skipped_stale"]) == (FRAMES, 2, FRAMES - 2)
    assert (snap["dropped_bad"], snap["missing_upstream"], worker.skipped_by_rate) == (0, 0, 0)
    assert snap["median_interval_ms"] == pytest.approx(PERIOD_NS / 1e6)


def test_stride_skips_before_the_mailbox_and_every_frame_is_counted_once(run):
    worker, model, acc, _ = run(stride=3)
    offered = [i for i in range(FRAMES) if worker.push(stamp(i), i)]
    assert offered == list(range(0, FRAMES, 3))
    model.release.set()
    # The worker took some frame of the 100 offered; the rest are stale except the newest.
    assert model.wait_done(1)
    last = offered[-1]
    with model._cond:
        model._cond.wait_for(lambda: model.done[-1] == last, WAIT)
    worker.stop()
    snap = acc.snapshot()
    assert worker.skipped_by_rate == FRAMES - len(offered) == 200
    assert snap["received"] == FRAMES
    assert snap["processed"] + snap["skipped_stale"] == len(offered)
    assert snap["processed"] == len(model.done) and model.done == sorted(model.done)
    worker.restart_stride()  # the next frame after a stride change is processed
    assert worker.admit(stamp(FRAMES)) and not worker.admit(stamp(FRAMES + 1))


def test_lock_step_frames_are_all_processed(run):
    worker, model, acc, _ = run()
    model.release.set()
    for i in range(FRAMES):
        worker.push(stamp(i), i)
        assert model.wait_done(i + 1)
    worker.stop()
    snap = acc.snapshot()
    assert model.done == list(range(FRAMES))
    assert (snap["received"], snap["processed"], snap["skipped_stale"]) == (FRAMES, FRAMES, 0)


def test_bad_frames_and_model_failures_are_counted_reported_and_the_worker_goes_on(run):
    worker, model, acc, reports = run(fail_on={1: ImageMessageError("truncated"),
                                               2: RuntimeError("model broke")})
    model.release.set()
    for i in range(4):
        worker.push(stamp(i), i)
        assert model.wait_done(i + 1)
    worker.stop()
    snap = acc.snapshot()
    assert model.done == [0, 1, 2, 3]
    assert (snap["processed"], snap["dropped_bad"], worker.model_errors) == (2, 1, 1)
    assert reports == [(ImageMessageError, True), (RuntimeError, False)]


def test_stop_drops_a_frame_not_taken_and_start_serves_again(run):
    worker, model, acc, _ = run()
    worker.push(stamp(0), 0)
    assert model.started.wait(WAIT)
    worker.push(stamp(1), 1)  # waits in the slot behind frame 0
    stopper = threading.Thread(target=worker.stop)
    stopper.start()
    assert worker._stop.wait(WAIT)  # stop was asked for before frame 0 finishes
    model.release.set()
    stopper.join(WAIT)
    assert not stopper.is_alive()
    assert model.done == [0]  # frame 1 was dropped with the slot, not processed after stop
    worker.start()
    worker.push(stamp(2), 2)
    assert model.wait_done(2) and model.done == [0, 2]
