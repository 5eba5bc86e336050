"""Keep CPython's full garbage collections short in long-running kop processes.

A full (generation 2) collection walks every object the cyclic collector tracks while the
process holds the GIL: for a broker that is a pause in every request. Measured on the
benchmark's latency workload (1,000 records/s), full collections of 110,000-165,000 tracked
objects took 55-80 ms and were the whole of kop's p99.9 latency. Most of those objects are
made at start-up (modules, the protocol schema, handler tables) and live for the whole
process; `freeze_startup_objects` moves them out of the collector's sight once the service
is up. (The per-entry objects a storage node keeps are plain tuples of ints for the same
reason: see storage/node/state.py.)
"""

from __future__ import annotations

import gc


def freeze_startup_objects() -> int:
    """Collect once, then exempt every surviving object from later collections (they are
    still freed as usual when nothing refers to them). Returns how many were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
