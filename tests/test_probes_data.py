"""The stakes text loader (needs the reference data folder, CTD_STATS_DATA_DIR)."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest

from probes.data import STAKES_FILES, load_stakes, load_stakes_file, parse_inputs

needs_data = pytest.mark.skipif(
    not os.environ.get("CTD_STATS_DATA_DIR"), reason="CTD_STATS_DATA_DIR (stakes files) not set"
)


def test_parse_inputs():
    assert parse_inputs("hello") == [{"role": "user", "content": "hello"}]
    msgs = parse_inputs('[{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]')
    assert msgs == [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    assert parse_inputs("[{not json") == [{"role": "user", "content": "[{not json"}]
    with pytest.raises(ValueError, match="inputs"):
        parse_inputs([{"role": "user"}])
    with pytest.raises(TypeError, match="inputs"):
        parse_inputs(3)


@needs_data
def test_group_cap_follows_the_paper():
    name = STAKES_FILES[("dev", "anthropic")]
    full = load_stakes_file(name, split="dev", group="anthropic")
    capped = load_stakes_file(name, split="dev", group="anthropic", cap=500)
    assert len(full) == 1004 and len(capped) == 500
    random.seed(42)
    idx = random.sample(range(len(full)), 500)
    assert capped.ids == tuple(full.ids[i] for i in idx)
    np.testing.assert_array_equal(capped.labels, full.labels[idx])


@needs_data
def test_load_stakes_splits_and_groups():
    sets = load_stakes(limit=5)
    assert [(d.split, d.group) for d in sets] == list(STAKES_FILES)
    train = sets[0]
    assert train.group == "training" and train.split == "train"
    assert all(len(d) == 5 and set(d.labels.tolist()) <= {0, 1} for d in sets)
    toolace = next(d for d in sets if d.group == "toolace")
    assert toolace.inputs[0][0]["role"] == "system"
    with pytest.raises(ValueError, match="splits"):
        load_stakes(splits=["val"])
    with pytest.raises(ValueError, match="cap"):
        load_stakes_file(STAKES_FILES[("dev", "mt")], split="dev", group="mt", cap=0)
