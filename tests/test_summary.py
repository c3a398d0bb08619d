"""The audit summary: Wilson intervals and the counters of the run."""

from __future__ import annotations

import math

import pytest

from vsil.summary import wilson_interval


def test_wilson_interval():
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
