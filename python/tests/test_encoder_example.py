# SPDX-License-Identifier: MIT
"""examples/python/encoder.py: the paper's encoder on the operator trains, and DDP with 2 gloo
processes on the same global batch gives the one-process loss curve (float64: up to summation
order)."""
import math
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "examples" / "python"))
import encoder  # noqa: E402


@pytest.mark.parametrize("policy", ["topk:5", "banded:5+1"])
def test_ddp_matches_one_process(policy):
    one, many = encoder.main(["--compare-ddp", "--policy", policy, "--epochs", "2", "--train",
                              "200", "--blocks", "2", "--batch", "20", "--dtype", "float64"])
    assert len(one) == len(many) == 2
    assert all(math.isfinite(x) for x in one)
    assert max(abs(a - b) for a, b in zip(one, many)) < 1e-9


def test_training_lowers_the_loss():
    curve = encoder.main(["--policy", "topk:5", "--epochs", "4", "--train", "400", "--blocks", "2",
                          "--batch", "20", "--lr", "0.5", "--quiet"])
    assert curve[-1] < curve[0]


def test_unknown_policy_is_rejected():
    with pytest.raises(SystemExit, match="unknown policy"):
        encoder.main(["--policy", "nope:3", "--epochs", "1"])
