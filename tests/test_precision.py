"""--precision (Keras mixed-precision policies, fp32 logits, fp16 loss scaling, fp32 attacks) and
--xla (jit_compile) on tiny models."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import testing
from tfadv import attacks, defenses, distribute


def _madry(precision, xla=False, random_start="uniform", **kwargs):
    with distribute.precision_policy(precision):
        net = distribute.float32_logits(testing.tiny_cnn(seed=0, with_bn=True))
        attack = attacks.get("pgd", eps=0.1, step_size=0.05, num_steps=2,
                             random_start=random_start)
        model = defenses.get("madry", net, attack=attack, **kwargs)
        model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=xla)
    return model, net


def _fit(model, n=32):
    x, y, _, _ = testing.digits_split(num_train=n)
    return model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(16), epochs=1,
                     verbose=0).history


def test_policy_is_scoped_and_unknown_precision_is_rejected():
    before = keras.mixed_precision.global_policy().name
    with distribute.precision_policy("bf16") as name:
        assert name == "mixed_bfloat16" == keras.mixed_precision.global_policy().name
    assert keras.mixed_precision.global_policy().name == before
    with pytest.raises(ValueError, match=r"Received: precision='fp8'"):
        with distribute.precision_policy("fp8"):
            pass


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_with_fp32_logits_and_weights(precision):
    model, net = _madry(precision)
    x = testing.digits_split(num_train=4)[0]
    assert net.get_layer("conv1").compute_dtype == distribute.PRECISIONS[precision][6:]
    assert net(x).dtype == tf.float32  # logits, hence every loss, in float32
    assert all(w.dtype == "float32" for w in net.weights)
    before = [w.copy() for w in net.get_weights()]
    logs = _fit(model)
    assert all(np.isfinite(v[-1]) for v in logs.values()), logs
    assert max(np.abs(a - b).max() for a, b in zip(before, net.get_weights())) > 1e-4
    is_scaled = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert is_scaled == (precision == "fp16")  # fp16 trains through loss scaling
    if is_scaled:
        assert float(model.optimizer.scale_loss(tf.constant(1.0))) > 1.0


def test_attack_can_be_traced_in_float32_under_a_mixed_policy():
    model, net = _madry("bf16", attack_fp32=True)
    x = testing.digits_split(num_train=4)[0]
    conv = net.get_layer("conv1")

    @tf.function
    def both(x):
        with distribute.compute_in_float32(net):
            inside = conv(x)
        return inside, conv(x)

    inside, outside = both(x)
    assert (inside.dtype, outside.dtype) == (tf.float32, tf.bfloat16)
    assert conv.compute_dtype == "bfloat16"  # restored after the block
    logs = _fit(model)
    assert np.isfinite(logs["loss"][-1])


def test_xla_compiled_training_matches_the_plain_step():
    # No random start: XLA and the TF kernels draw different random numbers.
    plain, plain_net = _madry("fp32", random_start="none")
    xla, xla_net = _madry("fp32", xla=True, random_start="none")
    assert xla.jit_compile and not plain.jit_compile
    _fit(plain), _fit(xla)
    for a, b in zip(plain_net.get_weights(), xla_net.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-4)
