"""A step's intermediates, recorded by name, and the input of each layer read from them: what the tests that
set aside ill-conditioned draws look at (a ReLU input near its kink, a narrow batch-norm feature, a row on a
ray), so that test_model, test_metamorphic and test_kernels walk the networks one way."""
import numpy as np

import byol_ref as byol
from byol_ref.model import network_plan


def recorded(online, target, v1, v2):
    """Every intermediate of loss_and_grads(online, target, v1, v2), by name, as NumPy arrays."""
    seen = {}
    byol.loss_and_grads(online, target, v1, v2, record=lambda k, v: seen.__setitem__(k, np.asarray(v)))
    return seen


def layer_inputs(seen, config, role):
    """``(kind, name, input)`` of every layer of the ``role`` network after its first, in order, from a
    dict of recorded intermediates: a layer's input is the output its predecessor recorded."""
    steps = [s for part in network_plan(config, role).values() for s in part]
    for (kind, name), (_, prev) in zip(steps[1:], steps[:-1]):
        yield kind, name, seen[f"{role}.{prev}.out"]
