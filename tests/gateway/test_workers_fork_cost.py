"""A per-document child does not copy its worker's memory by collecting its garbage.

After ``fork`` every page is shared until written; a full collection in the child writes the
header of every object the worker had (hundreds of thousands after start-up), so each child
copied most of the worker. ``run_isolated`` freezes the worker's objects for the fork (the
child's collector skips them) and unfreezes them in the worker at once, so the worker's own
garbage is still collected.
"""

from __future__ import annotations

import gc

from gateway.wire import plain_value
from gateway.workers import run_isolated


def _frozen_and_collect(_: object) -> int:
    gc.collect()  # what a sanitizer's allocations trigger sooner or later
    return gc.get_freeze_count()


def test_the_child_collector_skips_the_workers_objects_and_the_worker_stays_unfrozen():
    ballast = [[index] for index in range(50_000)]  # a worker's long-lived objects
    frozen_in_child = run_isolated(
        _frozen_and_collect, None, timeout=30, memory_limit_mb=512, decode=plain_value
    )
    assert frozen_in_child >= len(ballast)
    assert gc.get_freeze_count() == 0
    assert ballast[-1] == [49_999]
