"""Splits of a folder dataset: stratified, seeded, and whole groups on one side."""

import numpy as np

from fer_train.data.folders import group_of, held_out


def test_held_out_takes_about_the_share_of_each_class_and_is_seeded():
    labels = np.repeat(np.arange(3), [100, 40, 10])
    names = [f"{k}.png" for k in range(len(labels))]
    mask = held_out(labels, names, 0.1, seed=3)
    assert [int(mask[labels == c].sum()) for c in range(3)] == [10, 4, 1]
    assert np.array_equal(mask, held_out(labels, names, 0.1, seed=3))
    assert not np.array_equal(mask, held_out(labels, names, 0.1, seed=4))


def test_a_group_never_straddles_the_split():
    import re

    pattern = re.compile(r"^(S\d+)_")
    names = [f"S{s:03d}_{q:03d}_{f:08d}.png" for s in range(30) for q in range(3) for f in range(3)]
    labels = np.array([(s + q) % 4 for s in range(30) for q in range(3) for f in range(3)])
    groups = [group_of(pattern, n) for n in names]
    mask = held_out(labels, groups, 0.2, seed=1)
    held = {g for g, m in zip(groups, mask) if m}
    kept = {g for g, m in zip(groups, mask) if not m}
    assert held and kept and not held & kept
    assert 0.1 < mask.mean() < 0.35
    assert group_of(pattern, "happy/x.png") == "happy/x.png"  # no match: the file is its own group
