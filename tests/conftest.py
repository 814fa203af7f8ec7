"""Shared test configuration: hypothesis profiles and the reference-data location."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Locally hypothesis keeps exploring (a failure prints its reproducing example and is stored in
# .hypothesis/); in CI (env CI set) the examples are derandomised, so a run is reproducible and a
# red CI is never a lucky seed. HYPOTHESIS_PROFILE overrides the choice.
settings.register_profile(
    "default",
    deadline=None,
    max_examples=100,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "ci",
    deadline=None,
    max_examples=60,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
_PROFILE = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "default")
settings.load_profile(_PROFILE)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

_SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
if "CTD_STATS_DATA_DIR" not in os.environ and _SHARED.is_dir():
    os.environ["CTD_STATS_DATA_DIR"] = str(_SHARED)


@pytest.fixture
def data_dir() -> Path:
    """The local reference-data folder; tests that need real data skip without it."""
    folder = os.environ.get("CTD_STATS_DATA_DIR")
    if not folder or not Path(folder).is_dir():
        pytest.skip("reference data not available: set CTD_STATS_DATA_DIR to ../shared/data")
    return Path(folder)
