"""Tests for tfadv.labels: BAT's adversarial labels (eq. 13-21, appendix A/B) and label smoothing (eq. 15)."""

import numpy as np
import pytest
import tensorflow as tf

from tfadv import labels


def ref_main(logits, c, beta, gamma):
    """Eq. (14) with eq. (18), written out per class in NumPy (float64)."""
    z = np.asarray(logits, np.float64)
    logp = z - np.log(np.sum(np.exp(z - z.max()))) - z.max()
    v = -logp
    n = len(z)
    others = [k for k in range(n) if k != c]
    v_mc, v_ll = min(v[k] for k in others), max(v[k] for k in others)
    denom = sum(v[k] for k in others) / (n - 1) - v_mc + gamma
    eps_y = 1.0 / (1.0 + beta / (n - 1) * (v_ll - v_mc + gamma) / denom)
    y = np.zeros(n)
    y[c] = 1 - eps_y
    for k in others:
        y[k] = eps_y / (n - 1) * (v[k] - v_mc + gamma) / denom
    return y, eps_y, v


def ref_sup(logits, c, beta, members=None):
    """Eq. (26) with eq. (28) (appendix A), optionally over a subset of classes (appendix B)."""
    z = np.asarray(logits, np.float64)
    v = -(z - z.max() - np.log(np.sum(np.exp(z - z.max()))))
    members = [k for k in range(len(z)) if k != c] if members is None else members
    s = sum(v[k] for k in members)
    v_max = max(v[k] for k in members)
    eps_y = 1.0 / (1.0 + beta * v_max / s)
    y = np.zeros(len(z))
    y[c] = 1 - eps_y
    for k in members:
        y[k] = eps_y * v[k] / s
    return y, eps_y


def random_logits(batch=16, n=10, scale=3.0, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(batch, n)) * scale).astype("float32"), rng.integers(0, n, batch)


# ------------------------------------------------------------------------------ label smoothing


def test_label_smoothing_eq15():
    y = labels.label_smoothing([2, 0], 4, 0.3).numpy()
    np.testing.assert_allclose(y, [[0.1, 0.1, 0.7, 0.1], [0.7, 0.1, 0.1, 0.1]], atol=1e-7)
    np.testing.assert_allclose(labels.label_smoothing([1], 3, 0.0).numpy(), [[0, 1, 0]])


@pytest.mark.parametrize("bad", [-0.1, 1.5, "x"])
def test_label_smoothing_bad_eps(bad):
    with pytest.raises(ValueError, match="Received"):
        labels.label_smoothing([0], 10, bad)


def test_label_smoothing_bad_num_classes():
    with pytest.raises(ValueError, match="Received"):
        labels.label_smoothing([0], 1, 0.1)


# ------------------------------------------------------------------------------ eq. (14)/(18)


@pytest.mark.parametrize("variant", ["main", "sup"])
def test_equal_non_true_gradients_give_label_smoothing(variant):
    # CIFAR-10 example of eq. (19): beta=9, n=10 -> eps_y = 0.5, y'_k = 0.5/9.
    logits = np.array([[4.0] + [0.5] * 9, [1.0] * 3 + [-2.0] + [1.0] * 6], np.float32)
    y = np.array([0, 3])
    soft, eps_y = labels.adversarial_labels(logits, y, beta=9, variant=variant, return_eps=True)
    np.testing.assert_allclose(eps_y.numpy(), [0.5, 0.5], atol=1e-6)
    np.testing.assert_allclose(soft.numpy(), labels.label_smoothing(y, 10, 0.5).numpy(), atol=1e-6)
    np.testing.assert_allclose(soft.numpy()[0, 1:], 0.5 / 9, atol=1e-7)


def test_hand_computed_three_classes():
    # p = (0.5, 0.3, 0.2), c = 0, beta = 9, gamma = 0.01:
    # v1 = -log 0.3, v2 = -log 0.2; denominator = (v1+v2)/2 - v1 + gamma; eps_y by eq. (18).
    p = np.array([0.5, 0.3, 0.2])
    v1, v2 = -np.log(0.3), -np.log(0.2)
    d = (v1 + v2) / 2 - v1 + 0.01
    eps_y = 1 / (1 + 9 / 2 * (v2 - v1 + 0.01) / d)
    expected = [1 - eps_y, eps_y / 2 * 0.01 / d, eps_y / 2 * (v2 - v1 + 0.01) / d]
    soft = labels.adversarial_labels(np.log(p)[None].astype("float32"), [0], beta=9).numpy()[0]
    np.testing.assert_allclose(soft, expected, rtol=1e-5)
    assert soft[0] == pytest.approx(9 * soft[2], rel=1e-5)  # eq. (16) with equality


@pytest.mark.parametrize("scale", [0.3, 3.0, 30.0])
def test_main_matches_eq14_eq18(scale):
    logits, y = random_logits(scale=scale, seed=1)
    soft, eps_y = labels.adversarial_labels(logits, y, beta=9, gamma=0.01, return_eps=True)
    for i in range(len(y)):
        ref, ref_eps, _ = ref_main(logits[i], y[i], 9, 0.01)
        np.testing.assert_allclose(soft.numpy()[i], ref, rtol=2e-4, atol=1e-6)
        assert eps_y.numpy()[i] == pytest.approx(ref_eps, rel=2e-4)


@pytest.mark.parametrize("variant", ["main", "sup"])
@pytest.mark.parametrize("beta", [1.0, 9.0, 11.0, 100.0])
def test_eq16_holds_with_equality_at_the_largest_budget(variant, beta):
    logits, y = random_logits(n=10, seed=2)
    soft = labels.adversarial_labels(logits, y, beta=beta, variant=variant).numpy()
    true = soft[np.arange(len(y)), y]
    others = soft.copy()
    others[np.arange(len(y)), y] = -1
    np.testing.assert_allclose(true, beta * others.max(axis=1), rtol=1e-4)  # eq. (16)/(27), equality
    # Any smaller budget keeps the inequality strict: eps_y is the largest allowed (eq. 17-18).
    soft_small = np.array(soft)
    smaller = 0.9 * (1 - true)
    scale = smaller / (1 - true)
    soft_small *= scale[:, None]
    soft_small[np.arange(len(y)), y] = 1 - smaller
    others_small = soft_small.copy()
    others_small[np.arange(len(y)), y] = -1
    assert np.all(1 - smaller > beta * others_small.max(axis=1))


@pytest.mark.parametrize("n,beta", [(10, 9.0), (100, 11.0), (3, 2.0)])
def test_eps_y_within_eq21_range(n, beta):
    for seed, scale in [(3, 0.1), (4, 3.0), (5, 20.0)]:
        logits, y = random_logits(batch=32, n=n, scale=scale, seed=seed)
        _, eps_y = labels.adversarial_labels(logits, y, beta=beta, return_eps=True)
        eps_y = eps_y.numpy()
        assert np.all(eps_y > 1 / (1 + beta)) and np.all(eps_y <= 1 / (1 + beta / (n - 1)) + 1e-6)
    # Near the eq. (20) extreme (the non-true gradient concentrated on one class, the LL class):
    # eps_y -> ~1/(1+beta), the open lower end of eq. (21).
    logits = np.array([[0.0] + [5.0] * (n - 2) + [-60.0]], np.float32)
    _, eps_y = labels.adversarial_labels(logits, [0], beta=beta, return_eps=True)
    assert 1 / (1 + beta) < eps_y.numpy()[0] < 1.25 / (1 + beta)


@pytest.mark.parametrize("variant,top_k", [("main", None), ("sup", None), ("sup", 9), ("main", 4)])
def test_labels_are_a_distribution(variant, top_k):
    for seed, scale in [(6, 0.01), (7, 5.0), (8, 80.0)]:
        logits, y = random_logits(batch=32, n=20, scale=scale, seed=seed)
        soft = labels.adversarial_labels(logits, y, beta=9, variant=variant, top_k=top_k).numpy()
        assert np.all(np.isfinite(soft)) and np.all(soft >= 0)
        np.testing.assert_allclose(soft.sum(axis=1), 1.0, atol=1e-5)
        true = soft[np.arange(len(y)), y]
        np.testing.assert_allclose(true, labels.true_class_mass(soft, y).numpy(), atol=1e-7)


def test_sup_matches_eq26_eq28():
    logits, y = random_logits(seed=9)
    soft, eps_y = labels.adversarial_labels(logits, y, beta=9, variant="sup", return_eps=True)
    for i in range(len(y)):
        ref, ref_eps = ref_sup(logits[i], y[i], 9)
        np.testing.assert_allclose(soft.numpy()[i], ref, rtol=2e-4, atol=1e-7)
        assert eps_y.numpy()[i] == pytest.approx(ref_eps, rel=2e-4)


def test_sup_is_one_gradient_ascent_step_eq29_eq30():
    logits, y = random_logits(batch=4, seed=10)
    soft = labels.adversarial_labels(logits, y, beta=9, variant="sup").numpy()
    for i in range(len(y)):
        _, _, v = ref_main(logits[i], y[i], 9, 0.01)
        others = [k for k in range(10) if k != y[i]]
        alpha = 1 / (sum(v[k] for k in others) + 9 * max(v[k] for k in others))  # eq. (30)
        np.testing.assert_allclose(soft[i, others], alpha * v[others], rtol=2e-4)  # eq. (29), y_k = 0


def test_top_k_puts_mass_only_on_k_largest_loss_classes():
    logits, y = random_logits(batch=8, n=100, seed=11)
    soft = labels.adversarial_labels(logits, y, beta=11, variant="sup", top_k=9).numpy()
    for i in range(len(y)):
        nonzero = set(np.flatnonzero(soft[i])) - {y[i]}
        assert len(nonzero) == 9
        masked = logits[i].copy()
        masked[y[i]] = np.inf
        assert nonzero == set(np.argsort(masked)[:9])  # smallest probability = largest v_k
        mc = np.argmax(np.where(np.arange(100) == y[i], -np.inf, logits[i]))
        assert soft[i, mc] == 0.0  # appendix B: y'_MC = 0
        ref, _ = ref_sup(logits[i], y[i], 11, members=sorted(nonzero))
        np.testing.assert_allclose(soft[i], ref, rtol=2e-4, atol=1e-7)
        assert soft[i, y[i]] == pytest.approx(11 * soft[i].max(where=np.arange(100) != y[i],
                                                                initial=0), rel=1e-4)


def test_top_k_equal_to_all_others_is_the_unrestricted_label():
    logits, y = random_logits(seed=12)
    for variant in ("main", "sup"):
        a = labels.adversarial_labels(logits, y, beta=9, variant=variant, top_k=9).numpy()
        b = labels.adversarial_labels(logits, y, beta=9, variant=variant).numpy()
        np.testing.assert_allclose(a, b, atol=1e-7)


def test_mc_share_main_below_sup_eq31_to_eq33():
    logits, y = random_logits(batch=32, seed=13)
    main = labels.adversarial_labels(logits, y, beta=9, variant="main").numpy()
    sup = labels.adversarial_labels(logits, y, beta=9, variant="sup").numpy()
    n = 10
    for i in range(len(y)):
        _, _, v = ref_main(logits[i], y[i], 9, 0.01)
        others = [k for k in range(n) if k != y[i]]
        mc = max(others, key=lambda k: logits[i][k])
        v_mc, v_ll, s = v[mc], max(v[k] for k in others), sum(v[k] for k in others)
        eq31 = 0.01 / (s - (n - 1) * (v_mc - 0.01) + 9 * (v_ll - v_mc + 0.01))
        eq32 = v_mc / (s + 9 * v_ll)
        assert main[i, mc] == pytest.approx(eq31, rel=1e-3)
        assert sup[i, mc] == pytest.approx(eq32, rel=1e-3)
        assert main[i, mc] < sup[i, mc]  # eq. (33)
        assert main[i, mc] == min(main[i, k] for k in others)  # smallest share goes to MC


def test_gradients_are_stopped():
    logits = tf.Variable(np.random.default_rng(0).normal(size=(4, 10)).astype("float32"))
    with tf.GradientTape() as tape:
        soft = labels.adversarial_labels(logits, [0, 1, 2, 3], beta=9)
        total = tf.reduce_sum(soft * tf.range(10, dtype=tf.float32))
    assert tape.gradient(total, logits) is None


def test_traceable_with_unknown_batch():
    fn = tf.function(lambda z, y: labels.adversarial_labels(z, y, beta=9.0, top_k=3),
                     input_signature=[tf.TensorSpec([None, 10]), tf.TensorSpec([None], tf.int32)])
    logits, y = random_logits(batch=5, seed=14)
    np.testing.assert_allclose(fn(logits, y).numpy(),
                               labels.adversarial_labels(logits, y, beta=9, top_k=3).numpy(),
                               atol=1e-6)


@pytest.mark.parametrize("kwargs", [dict(beta=0.0), dict(beta=-1.0), dict(beta=9, gamma=0.0),
                                    dict(beta=9, variant="other"), dict(beta=9, top_k=0),
                                    dict(beta=9, top_k=10), dict(beta=9, top_k=2.5)])
def test_bad_arguments(kwargs):
    logits, y = random_logits(batch=2, seed=15)
    with pytest.raises(ValueError, match="Received"):
        labels.adversarial_labels(logits, y, **kwargs)


def test_bad_shapes():
    with pytest.raises(ValueError, match="Received"):
        labels.adversarial_labels(np.zeros((10,), np.float32), [0], beta=9)
    with pytest.raises(ValueError, match="Received"):
        labels.adversarial_labels(np.zeros((2, 10), np.float32), [[0], [1]], beta=9)
