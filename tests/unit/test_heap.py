"""The start-up heap is frozen out of the collector's walks; later garbage is still collected."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_settle_freezes_survivors_and_later_cycles_are_still_collected() -> None:
    # In a child process: a frozen heap cannot be thawed selectively in this one.
    script = textwrap.dedent(
        """
        import gc, weakref
        from telex.heap import settle

        class Node:
            pass

        def cycle():
            a, b = Node(), Node()
            a.other, b.other = b, a
            return weakref.ref(a)

        kept = Node()
        before = cycle()  # garbage made during start-up
        settle()
        assert before() is None, "start-up garbage was frozen instead of collected"
        assert gc.get_freeze_count() > 0
        gc.unfreeze()
        frozen = set(map(id, gc.get_objects(generation=2)))
        assert id(kept) in frozen, "a start-up survivor was not frozen"
        gc.freeze()
        after = cycle()  # garbage made while running
        gc.collect()
        assert after() is None, "the collector no longer collects new cycles"
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok")
