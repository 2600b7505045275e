"""Test helper: with AUTOLABEL_TEST_SLOW_ENCODE=SECONDS, every image batch the model encodes takes that much longer.

Put this folder on PYTHONPATH of a subprocess (and so of the Ray workers it starts) to make a run slow
enough, deterministically, to be stopped in the middle.
"""

import os
import time

_DELAY = float(os.environ.get("AUTOLABEL_TEST_SLOW_ENCODE", "0") or 0)

if _DELAY > 0:
    from autolabel.embedding.model import ZeroShotModel

    _real = ZeroShotModel.encode_images

    def _slow(self, batch):  # type: ignore[no-untyped-def]
        time.sleep(_DELAY)
        return _real(self, batch)

    ZeroShotModel.encode_images = _slow
