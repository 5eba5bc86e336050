"""freeze_startup_objects takes what exists at start-up out of later full collections."""

from __future__ import annotations

import gc

from storage.gc_pauses import freeze_startup_objects


def test_startup_objects_are_frozen_and_later_ones_are_not():
    try:
        existing = object.__new__(type("Existing", (), {}))
        frozen = freeze_startup_objects()
        assert frozen == gc.get_freeze_count() > 0
        assert not any(o is existing for o in gc.get_objects())  # out of every generation
        later = object.__new__(type("Later", (), {}))
        assert any(o is later for o in gc.get_objects())
    finally:
        gc.unfreeze()
