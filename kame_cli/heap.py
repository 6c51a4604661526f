"""Objects that live as long as the process, kept out of the garbage collector's way.

Importing LiteLLM (~2400 pydantic models) or torch makes hundreds of thousands of objects that never
die. Collecting while they are made walks the growing heap again and again (LiteLLM beside torch: 5
full collections, 0.6 of its 2.2 CPU-s), and every later full collection walks them once more. Made
with the collector off and then frozen (`gc.freeze`, as Python's docs advise before a fork), they
are never walked again, in this process or in its forks, whose collections would otherwise also
write to every page they share with it.

- `long_lived_objects()`: a block whose new objects live as long as the process; it nests (the
  collector comes back on only where it was on).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def long_lived_objects() -> Iterator[None]:
    """Run the block with the collector off, then freeze what is alive."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
