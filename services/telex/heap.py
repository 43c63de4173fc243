"""The garbage collector's share of tail latency, kept small.

CPython's cyclic collector pauses the whole process while it walks the objects of the
generations it collects. A full collection walks every container object the process holds:
after start-up that is the imported modules, the enrichers' models and the gazetteer, tens of
thousands of objects that live as long as the process. Measured under the latency benchmark,
each full collection paused a stage for 40-80 ms, and an update arriving meanwhile waited.

:func:`settle` is called once start-up is done. It collects what start-up left behind, then
freezes the rest into the collector's permanent generation, which no collection walks again.
Those objects were never going to be freed anyway; what is allocated afterwards is collected
as before.
"""

from __future__ import annotations

import gc

from telex.log import get_logger

log = get_logger(__name__)


def settle() -> None:
    """Collect start-up's garbage and keep the collector off what survives it."""
    gc.collect()
    gc.freeze()
    log.info("heap.settled", frozen=gc.get_freeze_count())
