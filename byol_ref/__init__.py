"""byol_ref: a reference implementation of BYOL (Grill et al. 2020) in NumPy/CuPy.

Every forward and backward is written by hand (``byol_ref.layers``, ``byol_ref.losses``)
and derived in ``docs/derivations.md``. ``import byol_ref`` never imports CuPy.

One training step by hand, in the official order (online and target forward on both views,
the symmetrised loss, its gradients, the optimiser, then the target's EMA of the updated
online params); ``byol_ref.train.fit`` runs the same step in a loop with augmentations,
schedules and checkpoints, and ``docs/step-by-hand.md`` walks through it:

    >>> import numpy as np
    >>> import byol_ref as byol
    >>> from byol_ref.optim import make_optimizer
    >>> online, target = byol.build(16, projection_dim=8, predictor_dim=4, hidden_size=32, seed=0)
    >>> opt = make_optimizer("lars")
    >>> state = opt.init(online.params)
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((8, 16))
    >>> view1, view2 = x + 0.1 * rng.standard_normal(x.shape), x + 0.1 * rng.standard_normal(x.shape)
    >>> res = byol.loss_and_grads(online, target, view1, view2)
    >>> params, state = opt.update(res.grads, state, online.params, lr=0.2)
    >>> online = online._replace(params=params, buffers=res.online_buffers)
    >>> target = target._replace(params=byol.ema_update(online.params, target.params, 0.99),
    ...                          buffers=res.target_buffers)
    >>> print(f"{float(res.loss):.4f}")
    3.2734

Where things are, module by module (each reads on its own):

- ``model``: the networks (``build``, ``build_online``, ``build_target``), ``forward``,
  ``loss``, ``loss_and_grads`` and ``ema_update``, exported here.
- ``layers`` and ``losses``: each op's forward and backward; ``gradcheck`` checks them (and
  other implementations' gradients) against central differences.
- ``optim`` (SGD, LARS, Adam, AdamW as pure ``init``/``update``), ``schedules`` (lr, tau).
- ``augment`` (two views of a batch), ``data`` (the embedded digits, user files), ``train``
  (``fit``: the loop, checkpoints, bit-identical resume), ``evaluate`` and ``report`` (probes
  and collapse monitors).
- ``trace``, ``diff``, ``interchange`` and ``presets``: record every intermediate of a step,
  compare two records, read other implementations' weights, and their numeric conventions.
- ``backend``: the one place NumPy or CuPy is imported (``get_backend``); ``kernels``: fused
  CuPy kernels beside the formulas they replace.
- ``checks``: the argument checks, and ``ByolRefWarning`` (exported here), the category of every
  warning byol-ref gives, for a warnings filter.
"""
from .backend import Backend, get_backend
from .checks import ByolRefWarning
from .model import (Config, LossAndGrads, Network, build, build_from_config, build_online, build_target,
                    data_dependent_init, default_hidden_size, default_momentum, default_predictor_dim,
                    default_projection_dim, ema_update, forward, loss, loss_and_grads, output_size)

from .version import __version__

__all__ = [
    "Backend", "ByolRefWarning", "Config", "LossAndGrads", "Network", "build", "build_from_config", "build_online",
    "build_target", "data_dependent_init", "default_hidden_size", "default_momentum",
    "default_predictor_dim", "default_projection_dim", "ema_update", "forward", "get_backend", "loss",
    "loss_and_grads", "output_size",
]
