"""Each tfadv attack of the cross-check and its torchattacks counterpart, with the same budgets, and
how both are scored (``scripts/crosscheck_torchattacks.py``).

An example counts as robust when the network still classifies the attack's output correctly, or
when that output leaves the eps-ball or the pixel range (an invalid adversarial example, counted).
tfadv runs on the Keras network in its pixel range; torchattacks on the converted PyTorch network
taking [0,1] NCHW images (:mod:`tfadv.interop.torch_port`). Needs PyTorch and torchattacks only
when a torchattacks attack runs.
"""

from __future__ import annotations

import time

ATTACK_NAMES = ("apgd_ce", "apgd_t", "fab_t", "square", "autoattack")
# torchattacks' Square (a copy of the authors' release) draws a window corner from {0, ..., H-h-1};
# tfadv's default follows the paper's Algorithm 2, {0, ..., H-h} (BUILD_NOTES.md). The cross-check
# compares the same algorithm, so tfadv's Square runs with the release's positions here; pass
# --tfadv_params=square:window_positions=paper to compare tfadv's default instead.
SQUARE_WINDOWS = "release"


def tfadv_attack(name, *, eps, pixel_range, seed, n_iter, n_queries, extra):
    """tfadv's attack ``name`` with the budgets of the cross-check (``extra``: per-attack
    parameters over them): ``(attack, params)``."""
    from tfadv import attacks as attacks_lib

    params = dict(eps=eps, pixel_range=pixel_range, seed=seed)
    if name in ("apgd_ce", "apgd_t", "fab_t"):
        params["n_iter"] = n_iter
    elif name == "square":
        params["n_queries"] = n_queries
        params["window_positions"] = SQUARE_WINDOWS
    elif name == "autoattack":
        params["version"] = "standard"
        params["attack_params"] = {"apgd_ce": {"n_iter": n_iter}, "apgd_t": {"n_iter": n_iter},
                                   "fab_t": {"n_iter": n_iter},
                                   "square": {"n_queries": n_queries,
                                              "window_positions": SQUARE_WINDOWS}}
    params.update(extra.get(name, {}))
    return attacks_lib.get(name, **params), params


def torch_attack(name, net, *, eps, num_classes, seed, n_iter, n_queries):
    """The torchattacks counterpart of a tfadv attack, on ``net`` taking [0,1] NCHW images."""
    import torchattacks

    if name == "apgd_ce":
        params = dict(norm="Linf", eps=eps, steps=n_iter, n_restarts=1, seed=seed, loss="ce",
                      rho=0.75)
        return torchattacks.APGD(net, **params), params
    if name == "apgd_t":
        params = dict(norm="Linf", eps=eps, steps=n_iter, n_restarts=1, seed=seed,
                      n_classes=num_classes, rho=0.75)
        return torchattacks.APGDT(net, **params), params
    if name == "fab_t":
        params = dict(norm="Linf", eps=eps, steps=n_iter, n_restarts=1, seed=seed,
                      multi_targeted=True, n_classes=num_classes)
        return torchattacks.FAB(net, **params), params
    if name == "square":
        params = dict(norm="Linf", eps=eps, n_queries=n_queries, n_restarts=1, p_init=0.8,
                      loss="margin", resc_schedule=True, seed=seed)
        return torchattacks.Square(net, **params), params
    if name == "autoattack":
        params = dict(norm="Linf", eps=eps, version="standard", n_classes=num_classes, seed=seed)
        attack = torchattacks.AutoAttack(net, **params)
        members = attack._autoattack.attacks
        for member in members:
            if isinstance(member, torchattacks.Square):
                member.n_queries = n_queries
            else:
                member.steps = n_iter
        params["member_steps"] = n_iter
        params["member_n_queries"] = n_queries
        params["members"] = [type(m).__name__ for m in members]
        return attack, params
    raise ValueError(f"Unknown attack. Expected one of {ATTACK_NAMES}. Received: {name!r}.")


def score(adv, x, y, predict, *, eps, low, high):
    """Per-example robustness (correct, or an invalid adversarial example) and the checks."""
    import numpy as np

    pred = predict(adv)
    linf = np.abs(adv - x).reshape(len(x), -1).max(axis=1)
    outside = ((adv < low - 1e-6) | (adv > high + 1e-6)).reshape(len(x), -1).any(axis=1)
    invalid = (linf > eps + 1e-5) | outside | ~np.isfinite(adv).reshape(len(x), -1).all(axis=1)
    robust = (pred == y) | invalid
    return robust, {"max_linf": float(linf.max()) if len(linf) else 0.0,
                    "invalid": int(invalid.sum()), "fooled_invalid": int(((pred != y) & invalid).sum())}


def run_tfadv(name, network, x, y, *, eps, rng, params_extra, seed, n_iter, n_queries, batch_size):
    """tfadv's attack ``name`` on the Keras network, in batches: ``(robust, details)``."""
    import numpy as np
    import tensorflow as tf

    attack, params = tfadv_attack(name, eps=eps, pixel_range=rng.name, seed=seed,
                                  n_iter=n_iter, n_queries=n_queries, extra=params_extra)
    start = time.time()
    advs = []
    for i in range(0, len(x), batch_size):
        xb = tf.constant(x[i:i + batch_size])
        yb = tf.constant(y[i:i + batch_size])
        advs.append(np.asarray(attack(network, xb, yb), np.float32))
    seconds = time.time() - start
    adv = np.concatenate(advs)
    predict = lambda a: keras_predict(network, a)  # noqa: E731
    robust, checks = score(adv, x, y, predict, eps=eps, low=rng.low, high=rng.high)
    return robust, dict(checks, seconds=round(seconds, 2),
                        params={k: v for k, v in params.items() if k != "pixel_range"})


def run_torch(name, net01, network, x01, x, y, *, eps01, rng, num_classes, seed, n_iter, n_queries,
              batch_size):
    """torchattacks' counterpart on the PyTorch network (in [0,1]): ``(robust, details)``, the
    details with the accuracy of its adversarial images on the Keras network."""
    import numpy as np

    attack, params = torch_attack(name, net01, eps=eps01, num_classes=num_classes, seed=seed,
                                  n_iter=n_iter, n_queries=n_queries)
    from tfadv.interop import torch_port

    adv01, seconds = attack_in_batches(attack, x01, y, batch_size)
    predict = lambda a: torch_port.torch_logits(net01, a).argmax(axis=1)  # noqa: E731
    robust, checks = score(adv01, x01, y, predict, eps=eps01, low=0.0, high=1.0)
    # The same adversarial images through the Keras network (in its own pixel range).
    adv_model_units = np.clip(adv01 * rng.width + rng.low, rng.low, rng.high).astype(np.float32)
    on_keras = keras_predict(network, adv_model_units) == y
    return robust, dict(checks, seconds=round(seconds, 2), params=params,
                        acc_of_its_images_on_keras=round(100.0 * float(on_keras.mean()), 2))


def attack_in_batches(attack, x01, y, batch_size):
    """A torchattacks attack over NHWC [0,1] images in batches: ``(adv01 NHWC float32, seconds)``."""
    import numpy as np
    import torch

    from tfadv.interop import torch_port

    start = time.time()
    advs = []
    for i in range(0, len(x01), batch_size):
        xb = torch.from_numpy(torch_port.nhwc_to_nchw(x01[i:i + batch_size]))
        yb = torch.from_numpy(y[i:i + batch_size].astype(np.int64))
        advs.append(torch_port.nchw_to_nhwc(attack(xb, yb).detach().numpy()))
    return np.concatenate(advs).astype(np.float32), time.time() - start


def keras_predict(network, images, batch_size=1000):
    """The Keras network's predicted classes (inference mode)."""
    import numpy as np

    preds = []
    for i in range(0, len(images), batch_size):
        preds.append(np.argmax(network(images[i:i + batch_size], training=False).numpy(), axis=1))
    return np.concatenate(preds) if preds else np.zeros([0], np.int64)


#: The single attacks whose pointwise worst case is the ``components`` row (AutoAttack's members).
COMPONENTS = ("apgd_ce", "apgd_t", "fab_t", "square")


def compare(attack, tf_robust, th_robust, tolerance):
    """The report row of one attack from both libraries' per-example robustness (bool arrays):
    accuracies, their difference, and per example how many points only one library fooled
    (``only_tfadv_robust``: torchattacks fooled them, tfadv did not; ``only_torchattacks_robust``:
    the reverse), with the indices each library fooled (``*_fooled``, for later worst cases)."""
    import numpy as np

    tf_robust, th_robust = np.asarray(tf_robust, bool), np.asarray(th_robust, bool)
    tf_acc, th_acc = 100 * float(tf_robust.mean()), 100 * float(th_robust.mean())
    return {"attack": attack, "tfadv_acc": round(tf_acc, 2), "torchattacks_acc": round(th_acc, 2),
            "diff_pp": round(tf_acc - th_acc, 2),
            "within_tolerance": abs(tf_acc - th_acc) <= tolerance + 1e-9,
            "both_robust": int(np.sum(tf_robust & th_robust)),
            "only_tfadv_robust": int(np.sum(tf_robust & ~th_robust)),
            "only_torchattacks_robust": int(np.sum(~tf_robust & th_robust)),
            "tfadv_fooled": np.flatnonzero(~tf_robust).tolist(),
            "torchattacks_fooled": np.flatnonzero(~th_robust).tolist()}


def components_row(rows, num_examples, tolerance):
    """The ``components`` row: per library, an example is robust only if it withstood every one of
    :data:`COMPONENTS` (the worst case over them, as AutoAttack's ensemble); None unless all four
    rows are present with their per-example results."""
    import numpy as np

    by_name = {r["attack"]: r for r in rows}
    if any("tfadv_fooled" not in by_name.get(name, {}) for name in COMPONENTS):
        return None
    robust = {}
    for side in ("tfadv", "torchattacks"):
        robust[side] = np.ones(num_examples, bool)
        for name in COMPONENTS:
            robust[side][by_name[name][f"{side}_fooled"]] = False
    return compare("components", robust["tfadv"], robust["torchattacks"], tolerance)
