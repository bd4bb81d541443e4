"""experiments/conditional/diagnose.py: the 5-NN judge (a classifier of another family than the CNNs that
reread kept checkpoints): its vote equals a hand count, the nearest neighbour breaks ties, and it reads
images the way per_class_fidelity feeds networks (uint8 in, [-1, 1] inside); training at the CPU width or at the
experiment's own widths (--width)."""

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "experiments" / "conditional"))


def test_nearest_neighbour_vote_is_a_hand_count():
    from diagnose import NearestNeighbours

    from ganlab.metrics.classifier import per_class_fidelity

    # 1x2x2 images; class 0 dark, class 1 bright, class 2 one bright pixel
    bank = np.array([[[[0, 0], [0, 0]]], [[[10, 0], [0, 0]]], [[[0, 10], [0, 0]]],
                     [[[250, 250], [250, 250]]], [[[240, 250], [250, 250]]],
                     [[[255, 0], [0, 0]]]], dtype=np.uint8)
    labels = np.array([0, 0, 0, 1, 1, 2])
    knn = NearestNeighbours(bank, labels, k=3, num_classes=3)
    queries = np.array([[[[5, 5], [0, 0]]],          # 3 nearest: the three dark ones -> 0
                        [[[245, 245], [245, 245]]],  # two bright + one of the rest -> 1 (2 votes of 3)
                        [[[255, 0], [0, 0]]]],       # nearest is the class-2 image, then two dark ones -> 0 (2 of 3)
                       dtype=np.uint8)
    assert per_class_fidelity(knn, queries, np.array([0, 1, 0]), ["a", "b", "c"]) == {"a": 1.0, "b": 1.0}
    # k=2: a 1-1 tie between class 2 (nearest) and class 0 goes to the nearest
    tie = NearestNeighbours(bank, labels, k=2, num_classes=3)
    assert per_class_fidelity(tie, queries[2:], np.array([2]), ["a", "b", "c"]) == {"c": 1.0}


def test_train_classifier_trains_the_network_it_is_given():
    """The MLP judge is trained by ganlab's classifier loop: the network passed in is the one trained and returned."""
    import torch
    from _cgan_helpers import pattern_images
    from torch import nn

    from ganlab.metrics.classifier import predict, train_classifier

    y = np.arange(300) % 10
    x = pattern_images(y, seed=0)[:, None]
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 64), nn.ReLU(), nn.Linear(64, 10))
    assert (predict(mlp, x) == y).mean() < 0.5  # untrained
    trained = train_classifier(x, y, num_classes=10, steps=60, batch_size=64, model=mlp)
    assert trained is mlp
    test_y = np.arange(100) % 10
    assert (predict(mlp, pattern_images(test_y, seed=1)[:, None]) == test_y).mean() > 0.95


def test_diagnose_trains_at_the_cpu_width_unless_told_the_experiments_own(monkeypatch, tmp_path):
    """``--width experiment`` drops the CPU-width overrides (base widths 32, z 64) from the training command; the
    experiment's own overrides come after them either way."""
    import diagnose

    commands = []
    monkeypatch.setattr(diagnose.subprocess, "run", lambda cmd, **kw: commands.append(cmd))
    for width in ("cpu", "experiment"):
        diagnose.train(tmp_path / "run", 10, ["experiment=cgan_fashion_guided"], 0, 10, width=width)
    cpu, own = commands
    assert [a for a in cpu if a in diagnose.CPU_WIDTH] == diagnose.CPU_WIDTH
    assert not [a for a in own if "base_width" in a or "z_dim" in a]
    assert cpu[-1] == own[-1] == "experiment=cgan_fashion_guided"
    assert [a for a in cpu if a not in diagnose.CPU_WIDTH] == own  # nothing else differs
