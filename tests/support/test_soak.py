"""Soak, short version: LeNet-5 training steps must not grow the resident set after
warm-up (``tools/soak.py`` runs 20,000 steps and reports the curve)."""

import pytest

from tools import soak

# Generous: allocator pools and the OS's page accounting move by a few MiB; a leak of
# even one batch's activations per step (~1 MiB) would add ~200 MiB here.
NOISE_BOUND = 24 << 20


def test_rss_does_not_grow_after_warm_up():
    result = soak.soak(steps=300, every=10, warmup=100)
    assert result["rss_max_after_warmup"] - result["rss_after_warmup"] < NOISE_BOUND, (
        result)
    assert len(result["curve"]) == 31 and result["curve"][-1][0] == 300


def test_summary_of_a_made_up_curve():
    curve = [(1, 100), (10, 500), (20, 520), (30, 540), (40, 560)]
    got = soak.summarize(curve, warmup=10)
    assert got["rss_start"] == 100 and got["rss_after_warmup"] == 500
    assert got["rss_end"] == 560 and got["rss_max"] == 560
    assert got["growth_after_warmup"] == 60
    assert got["slope_bytes_per_1000_steps"] == pytest.approx(2000.0)
    assert "| step | RSS (MiB) |" in soak.markdown(
        {**got, "steps": 40, "batch": 64, "threads": 1, "seconds": 1.0,
         "final_loss": 0.5,
         "curve": curve})
