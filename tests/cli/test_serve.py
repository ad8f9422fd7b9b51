"""What ``psatriage serve`` and ``psatriage worker`` do to their own process (the processes
themselves run in ``tests/test_e2e.py`` and ``tests/test_crash.py``)."""

from __future__ import annotations

import gc

from psatriage.cli.serve import _freeze_heap


def test_start_up_objects_are_left_out_of_later_garbage_collections() -> None:
    """A full collection over a started process's objects stalled every request in flight;
    after start-up they are frozen, and what is made later is collected as before."""
    gc.unfreeze()
    try:
        _freeze_heap()
        frozen = gc.get_freeze_count()
        assert frozen > 1000  # this process's modules, at least
        later = [[n] for n in range(100)]
        assert gc.get_freeze_count() == frozen
        collected = (o for generation in range(3) for o in gc.get_objects(generation=generation))
        assert any(tracked is later[0] for tracked in collected)
    finally:
        gc.unfreeze()
