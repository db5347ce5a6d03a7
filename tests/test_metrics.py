"""sports1m_tf.metrics on hand-made predictions with known answers."""
import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from sports1m_tf import metrics


def test_hit_at_k_single_and_multi_label():
    probs = np.array([
        [0.6, 0.3, 0.1, 0.0],   # label 0: top-1
        [0.6, 0.3, 0.1, 0.0],   # label 1: second
        [0.6, 0.3, 0.1, 0.0],   # labels {3, 2}: best label is third
        [0.1, 0.2, 0.3, 0.4],   # labels {0, 3}: 3 is top-1 -> multi-label hit
    ])
    labels = [[0], [1], [3, 2], [0, 3]]
    np.testing.assert_array_equal(metrics.hits_at_k(probs, labels, 1), [True, False, False, True])
    assert metrics.hit_at_k(probs, labels, 1) == 0.5
    assert metrics.hit_at_k(probs, labels, 2) == 0.75
    assert metrics.hit_at_k(probs, labels, 3) == 1.0


def test_hit_at_k_ties_count_against_the_prediction():
    uniform = np.full((2, 5), 0.2)
    assert metrics.hit_at_k(uniform, [[0], [4]], 1) == 0.0
    assert metrics.hit_at_k(uniform, [[0], [4]], 5) == 1.0
    # Tied with a non-label at the top: not a sure top-1, a sure top-2.
    probs = np.array([[0.4, 0.4, 0.2]])
    assert metrics.hit_at_k(probs, [[1]], 1) == 0.0
    assert metrics.hit_at_k(probs, [[1]], 2) == 1.0
    # Tied only with another label: every tie-break gives a label.
    assert metrics.hit_at_k(probs, [[0, 1]], 1) == 1.0


def test_padded_and_multi_hot_labels_agree():
    probs = np.array([[0.1, 0.9], [0.8, 0.2]])
    padded = np.array([[1, -1], [0, 1]])
    hot = np.array([[False, True], [True, True]])
    assert metrics.hit_at_k(probs, padded, 1) == metrics.hit_at_k(probs, hot, 1) == 1.0


def test_rows_without_labels_are_an_error_for_hits():
    with pytest.raises(ValueError, match="no labels"):
        metrics.hit_at_k(np.ones((2, 3)) / 3, [[0], []], 1)
    with pytest.raises(ValueError, match="out of range"):
        metrics.hit_at_k(np.ones((1, 3)) / 3, [[3]], 1)


def test_average_precision_known_values_and_no_positive_classes():
    probs = np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.3, 0.7, 0.0], [0.1, 0.9, 0.0]])
    labels = [[0], [1], [0], [1]]
    ap = metrics.average_precision_per_class(probs, labels)
    # class 0 ranked: r0(+), r1(-), r2(+), r3(-): (1/1 + 2/3) / 2
    assert ap[0] == pytest.approx((1 + 2 / 3) / 2)
    # class 1 ranked: r3(+), r2(-), r1(+), r0(-)
    assert ap[1] == pytest.approx((1 + 2 / 3) / 2)
    assert np.isnan(ap[2])
    assert metrics.mean_average_precision(probs, labels) == pytest.approx((1 + 2 / 3) / 2)
    assert metrics.mean_average_precision(ap_per_class=ap) == pytest.approx((1 + 2 / 3) / 2)
    assert np.isnan(metrics.mean_average_precision(ap_per_class=np.full(3, np.nan)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_average_precision_matches_sklearn_including_ties(seed):
    rng = np.random.default_rng(seed)
    n, c = 60, 6
    probs = rng.integers(0, 5, size=(n, c)) / 4.0   # coarse scores: many ties
    labels = [list(rng.choice(c, size=rng.integers(1, 3), replace=False)) for _ in range(n)]
    truth = metrics.multi_hot(labels, c)
    ap = metrics.average_precision_per_class(probs, labels)
    for k in range(c):
        assert ap[k] == pytest.approx(average_precision_score(truth[:, k], probs[:, k]))


def test_group_map_and_ucf101_groups():
    ap = np.array([1.0, 0.5, np.nan, 0.0])
    assert metrics.group_map(ap, {"a": [0, 1], "b": [2, 3], "c": [2]}) == pytest.approx(
        {"a": 0.75, "b": 0.0, "c": float("nan")}, nan_ok=True)
    names = ["ApplyEyeMakeup", "Archery", "HandStandPushups", "Drumming", "SalsaSpin", "YoYo"]
    groups = metrics.ucf101_groups(names)
    assert groups == {"Human-Object Interaction": [0, 5], "Body-Motion Only": [2],
                      "Human-Human Interaction": [4], "Playing Musical Instruments": [3],
                      "Sports": [1]}
    sizes = [len(v) for v in metrics.UCF101_GROUPS.values()]
    assert sizes == [20, 16, 5, 10]   # + 50 Sports = UCF-101's 101 classes


def test_confusion_counts_and_symmetric_pairs():
    probs = np.array([
        [0.1, 0.8, 0.1],   # label 0 -> predicted 1
        [0.7, 0.2, 0.1],   # label 1 -> predicted 0
        [0.1, 0.8, 0.1],   # label 0 -> predicted 1
        [0.1, 0.1, 0.8],   # label 2 -> correct
        [0.1, 0.8, 0.1],   # labels {1, 2} -> correct via 1; 2 not confused
        [0.1, 0.1, 0.8],   # labels {0, 1} -> predicted 2: both confused with 2
    ])
    labels = [[0], [1], [0], [2], [1, 2], [0, 1]]
    counts = metrics.confusion_counts(probs, labels)
    np.testing.assert_array_equal(counts, [[0, 2, 1], [1, 1, 1], [0, 0, 1]])
    assert counts.sum() == 7
    assert metrics.most_confused_pairs(counts) == [(0, 1, 3), (0, 2, 1), (1, 2, 1)]
    assert metrics.most_confused_pairs(counts, top_n=1) == [(0, 1, 3)]


def test_top_k_orders_best_first():
    idx, scores = metrics.top_k(np.array([[0.1, 0.5, 0.4], [0.3, 0.3, 0.4]]), 2)
    np.testing.assert_array_equal(idx, [[1, 2], [2, 0]])
    np.testing.assert_allclose(scores, [[0.5, 0.4], [0.4, 0.3]])


def test_hits_at_k_over_many_rows_matches_argsort():
    # > one row block; random float scores have no ties, so argsort is the reference
    rng = np.random.default_rng(0)
    probs = rng.random((20000, 7))
    labels = rng.integers(0, 7, size=(20000, 2))
    top3 = np.argsort(-probs, axis=1)[:, :3]
    expected = (top3[:, :, None] == labels[:, None, :]).any(axis=(1, 2))
    np.testing.assert_array_equal(metrics.hits_at_k(probs, labels, 3), expected)
