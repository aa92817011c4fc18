"""byol_ref: a reference implementation of BYOL (Grill et al. 2020) in NumPy/CuPy.

Every forward and backward is written by hand (``byol_ref.layers``, ``byol_ref.losses``)
and derived in ``docs/derivations.md``. ``import byol_ref`` never imports CuPy.
"""
from .backend import Backend, get_backend
from .model import (Config, LossAndGrads, Network, build, build_from_config, build_online, build_target,
                    data_dependent_init, default_hidden_size, default_momentum, default_predictor_dim,
                    default_projection_dim, ema_update, forward, loss, loss_and_grads, output_size)

from .version import __version__

__all__ = [
    "Backend", "Config", "LossAndGrads", "Network", "build", "build_from_config", "build_online",
    "build_target", "data_dependent_init", "default_hidden_size", "default_momentum",
    "default_predictor_dim", "default_projection_dim", "ema_update", "forward", "get_backend", "loss",
    "loss_and_grads", "output_size",
]
