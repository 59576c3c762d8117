"""Paired bootstrap over distinct test items, checked against hand-computed cases."""
import numpy as np
import pytest

from pycmlt.evaluation.paired import RunPair, paired_bootstrap, resolved


def pair(keys, labels, a, b, split=0, few=()):
    return RunPair(split=split, item_keys=keys, labels=labels, correct=np.asarray(a, bool),
                   correct_reference=np.asarray(b, bool), few_classes=list(few))


def test_a_constant_difference_has_a_zero_width_interval():
    # the method is right on every sample, the reference on none: every replicate gives +1
    p = pair(["a", "a", "b", "c"], [0, 0, 1, 1], [1, 1, 1, 1], [0, 0, 0, 0], few=[1])
    r = paired_bootstrap([p], n_boot=200)
    assert r["top1"] == {"delta": 1.0, "ci": [1.0, 1.0], "ci_runs": [1.0, 1.0]}
    assert r["few"] == {"delta": 1.0, "ci": [1.0, 1.0], "ci_runs": [1.0, 1.0]}
    assert resolved(r["top1"]["ci"]) and r["runs"] == 1


def test_two_items_give_the_hand_computed_distribution():
    # item x: method right, reference wrong (difference 1); item y: both right (difference 0).
    # Drawing 2 items with replacement: {x,x} p=1/4 -> 1, {x,y} p=1/2 -> 1/2, {y,y} p=1/4 -> 0.
    p = pair(["x", "y"], [0, 0], [1, 1], [0, 1])
    r = paired_bootstrap([p], n_boot=4000, return_replicates=True)
    reps = r["top1"]["replicates"]
    assert r["top1"]["delta"] == 0.5 and r["top1"]["ci"] == [0.0, 1.0]
    assert set(np.unique(reps)) == {0.0, 0.5, 1.0}
    for value, prob in ((0.0, 0.25), (0.5, 0.5), (1.0, 0.25)):
        assert np.mean(reps == value) == pytest.approx(prob, abs=0.03)
    assert not resolved(r["top1"]["ci"]) and r["few"] is None  # no few-shot class


def test_renderings_of_one_item_are_resampled_together():
    # two items rendered twice each; the method is right on x, the reference on y: delta 0.
    # Items drawn: {x,x} -> +1, {y,y} -> -1 (each p=1/4), {x,y} -> 0. Resampling the four samples
    # independently would give +-1 only when all four draws hit one item (p=1/8).
    p = pair(["x", "x", "y", "y"], [0, 0, 1, 1], [1, 1, 0, 0], [0, 0, 1, 1], few=[1])
    r = paired_bootstrap([p], n_boot=4000, return_replicates=True)
    reps = r["top1"]["replicates"]
    assert r["top1"]["delta"] == 0.0 and r["top1"]["ci"] == [-1.0, 1.0]
    assert set(np.unique(reps)) == {-1.0, 0.0, 1.0} and np.mean(np.abs(reps) == 1) == pytest.approx(0.5, abs=0.03)
    # few = class 1 (item y only): the method 0, the reference 1; replicates without y drop out
    assert r["few"]["delta"] == -1.0 and r["few"]["ci"] == [-1.0, -1.0]
    assert len(r["few"]["replicates"]) == pytest.approx(4000 * 0.75, rel=0.05)


def test_runs_are_averaged_and_seeds_of_one_split_share_the_draw():
    p1 = pair(["x", "y"], [0, 0], [1, 1], [0, 1], split="d0")       # difference 1/2
    p2 = pair(["x", "y"], [0, 0], [1, 1], [1, 1], split="d0")       # difference 0
    r = paired_bootstrap([p1, p2], n_boot=4000, return_replicates=True)
    # shared draw: {x,x} -> (1 + 0)/2, {x,y} -> 1/4, {y,y} -> 0
    assert r["top1"]["delta"] == 0.25 and r["runs"] == 2
    assert set(np.unique(r["top1"]["replicates"])) == {0.0, 0.25, 0.5}
    # another split is drawn independently: 9 combinations of the two splits' draws
    p3 = pair(["u", "v"], [0, 0], [1, 1], [0, 1], split="d1")
    r = paired_bootstrap([p1, p3], n_boot=4000, return_replicates=True)
    assert r["top1"]["delta"] == 0.5 and len(np.unique(r["top1"]["replicates"])) == 5  # {0, .25, .5, .75, 1}
    again = paired_bootstrap([p1, p3], n_boot=4000, return_replicates=True)
    assert np.array_equal(again["top1"]["replicates"], r["top1"]["replicates"])       # seeded


def test_bad_input_is_refused():
    good = pair(["x", "y"], [0, 0], [1, 1], [0, 1])
    with pytest.raises(ValueError, match="at least one run pair"):
        paired_bootstrap([])
    with pytest.raises(ValueError, match="n_boot"):
        paired_bootstrap([good], n_boot=0)
    with pytest.raises(ValueError, match="same samples"):
        paired_bootstrap([good, pair(["x", "z"], [0, 0], [1, 1], [0, 1])])
    with pytest.raises(ValueError, match="correct has shape"):
        paired_bootstrap([pair(["x", "y"], [0, 0], [1], [0, 1])])
    with pytest.raises(ValueError, match="same length"):
        paired_bootstrap([pair(["x", "y"], [0], [1, 1], [0, 1])])


def test_the_run_interval_widens_when_runs_disagree():
    # split d0: the method right on every item, the reference on none (+1); split d1: both right (0).
    # Items alone: every replicate averages +1 and 0, so ci = [1/2, 1/2], resolved. Runs drawn too:
    # {d0,d0} p=1/4 -> 1, {d0,d1} p=1/2 -> 1/2, {d1,d1} p=1/4 -> 0, so ci_runs = [0, 1]: not resolved.
    p0 = pair(["x", "y"], [0, 0], [1, 1], [0, 0], split="d0")
    p1 = pair(["x", "y"], [0, 0], [1, 1], [1, 1], split="d1")
    r = paired_bootstrap([p0, p1], n_boot=4000)
    assert r["top1"]["delta"] == 0.5 and r["top1"]["ci"] == [0.5, 0.5] and r["top1"]["ci_runs"] == [0.0, 1.0]
    assert resolved(r["top1"]["ci"]) and not resolved(r["top1"]["ci"], r["top1"]["ci_runs"])
    one = paired_bootstrap([p0], n_boot=500)                       # one run: the same interval
    assert one["top1"]["ci_runs"] == one["top1"]["ci"] and not resolved()

