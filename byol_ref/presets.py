"""Presets: the numeric conventions of each known BYOL implementation, as plain data.

A :class:`Preset` is a frozen dataclass with one field per convention of BYOL_FACTS
section (d) that applies to an MLP BYOL: normalisation epsilon, loss form and
symmetrisation, views through batch norm, batch-norm statistics, target init and target
batch-norm mode, the tau schedule, EMA timing and scope, LARS, weight decay, the
learning-rate warm-up and end, MLP biases and the parameter init. Every field is a
``model.Config`` or ``train.TrainConfig`` field of the same name, except two that only
exist here:

* ``final_lr_ratio``: the final learning rate as a fraction of the peak, resolved into
  ``TrainConfig.final_lr`` when the batch is known (``warmup_epochs``, a fixed number of
  epochs in every implementation that warms up, is capped at the run's length);
* ``ema_scope``: honoured by :mod:`byol_ref.trace` (``byol-ref trace``); ``byol-ref train``
  supports its default only.

Presets: ``deepmind`` (the default), ``byol-pytorch``, ``lightly``, ``solo-learn``,
``edifice``. Each field's documentation (``FIELD_DOCS``, also rendered into
``Preset.__doc__`` and ``docs/presets.md``) says which implementation uses which value
and where in its source.

Out of scope (they do not apply to an MLP BYOL on fixed views, and have no field):
convolution padding (d19), augmentation style (d20; ``byol-ref trace`` takes fixed views),
byol-pytorch's mock forward at construction (d21; a trace starts from given buffers, so export
them *after* constructing the model), the online classifier (d22) and mixed precision (d23; pass
``dtype``). Cross-device batch norm without SyncBN (d7) and gradient accumulation (d24) describe
how a run cuts its batch, not an implementation, so they are no preset field either: they are
``model.Config``'s ``bn_shards`` and ``bn_shard_running`` (``--set bn_shards=S``); every preset
takes its statistics over the whole batch (``bn_shards=1``).
byol-pytorch 0.9 turns on simplicial embeddings by default (a Linear -> BatchNorm -> grouped
softmax block in front of the projector; not part of BYOL): the ``byol-pytorch`` preset is its
BYOL, ``BYOL(..., use_simplicial_embeddings=False)``, and its default is the preset with
``sem_simplices=32`` (``model.Config``; ``--set sem_simplices=32``).
PyTorch <= 1.9's ``cosine_similarity`` form x.y / max(||x|| ||y||, eps) (d2) is not
reproduced: current PyTorch (checked with 2.x) clamps each norm, which is ``norm_eps_mode="norm"``
with ``norm_eps=1e-8``; the two differ only when ||p|| ||z|| < 1e-8. That match is exact in the
loss and, wherever both norms exceed 1e-8, in the gradient; at or below, PyTorch clamps in place under
no-grad and differentiates through the unclamped norm (``docs/derivations.md`` section 5).
solo-learn's scheduler class with no warm-up at all (W = 0) would start at ``warmup_start`` and
scale the whole cosine by it, but solo-learn's ``BaseMethod`` passes ``warmup_start_lr=lr`` when
``warmup_epochs`` is 0, so its runs start at the peak, as byol-ref's do (its W - 1 warm-up divisor
is ``warmup_denominator``). The ``solo-learn`` preset follows solo-learn's GitHub main (per-step
``LinearWarmupCosineAnnealingLR``, its ``LARS`` class); the last PyPI release, 1.0.2, steps the
pl_bolts scheduler once per *epoch* by default (``TrainConfig.lr_interval="epoch"``) from a
``warmup_start_lr`` of 0.003 (even with no warm-up), and wraps SGD in a ``LARSWrapper`` whose update
is the same for an MLP (1-D tensors skip both LARS and weight decay). ``edifice`` draws its
weights as ``Axon.dense`` does (``init="glorot"``), from byol-ref's generator: for the very same
start, load the Elixir run's weights (``byol_ref.interchange``).

Usage::

    from byol_ref.presets import get_preset
    p = get_preset("lightly", norm_eps=1e-6)          # any field overridden
    cfg = p.config(encoder_dim=64, hidden_size=128, projection_dim=32, predictor_dim=16)
    tcfg = p.train_config(epochs=100, batch_size=256, seed=1)

From the command line: ``byol-ref train --preset lightly --set norm_eps=1e-6`` and
``byol-ref trace --preset lightly --set ...``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from .checks import check_choice, check_real

__all__ = ["Preset", "PRESETS", "FIELD_DOCS", "get_preset", "preset_names", "MODEL_FIELDS", "TRAIN_FIELDS",
           "presets_markdown"]

#: Preset fields that are ``model.Config`` fields.
MODEL_FIELDS = ("layout", "norm", "hidden_bias", "head_bias", "init", "target_init", "bn_eps", "bn_decay",
                "bn_running", "bn_var", "ln_eps", "ln_var", "views", "target_bn", "norm_eps_mode", "norm_eps",
                "loss_form", "symmetric", "sym_reduce")
#: Preset fields that are ``train.TrainConfig`` fields.
TRAIN_FIELDS = ("optimizer", "lr", "lr_batch_scale", "weight_decay", "momentum", "lars_eta",
                "lars_trust_ratio", "lars_eps", "lars_clip_lr", "lars_only_with_wd", "exclude", "warmup_start",
                "warmup_offset", "warmup_epochs", "warmup_denominator", "cosine_denominator", "lr_rounding",
                "tau_base", "tau_schedule", "tau_denominator", "ema_when", "ema_form")
#: Preset fields resolved into TrainConfig fields (or honoured by the trace only).
OWN_FIELDS = ("final_lr_ratio", "ema_scope")

# One entry per field: what it means, then who uses which value and where (BYOL_FACTS (a), (d), (g)).
FIELD_DOCS = {
    "name": "Preset name.",
    "layout": "Block order. 'paper': Linear -> norm -> ReLU (deepmind `utils/networks.py` MLP; byol-pytorch "
              "`MLP`; lightly `BYOLProjectionHead`; solo-learn `byol.py`). 'edifice': Linear -> ReLU -> LayerNorm, "
              "no norm in the predictor (`Edifice.Contrastive.BYOL`).",
    "norm": "Normalisation in the MLPs: 'batch' (deepmind, byol-pytorch, lightly, solo-learn) or 'layer' "
            "(edifice, Axon layer_norm). No preset uses 'group' (with Config.weight_std: the batch-statistics-"
            "free BYOL of Richemond et al. 2020), 'affine' (with TrainConfig.data_init: their BN-free BYOL "
            "initialised from the data's statistics) or 'none' (the collapse ablation).",
    "hidden_bias": "Bias on the first Linear of each block (and the encoder Linears). True: deepmind "
                   "(`hk.Linear` default), byol-pytorch (`nn.Linear` default), solo-learn, edifice. False: "
                   "lightly (`ProjectionHead` uses `bias=not batch_norm`). The encoder stands in for your "
                   "backbone: `Config.encoder_bias` (`--set encoder_bias=true`) gives it biases of its own. "
                   "BYOL_FACTS d17.",
    "head_bias": "Bias on the last Linear of projector and predictor. False: deepmind (`networks.py` MLP "
                 "`with_bias=False`). True: byol-pytorch, lightly, solo-learn, edifice. BYOL_FACTS d17.",
    "init": "Parameter init when drawn from a seed. 'haiku': truncated normal std 1/sqrt(fan_in), b = 0 "
            "(deepmind, Haiku defaults). 'torch': U(+-1/sqrt(fan_in)) for w and b (byol-pytorch, lightly, "
            "solo-learn: `nn.Linear` default). 'glorot': U(+-sqrt(6 / (fan_in + fan_out))) for w, b = 0 (edifice: "
            "`Axon.dense` defaults, glorot_uniform kernel and zeros bias). The draws are byol-ref's own: for the "
            "very same start, load the other code's weights (`--layout torch|axon`, docs/verifying.md). d18.",
    "target_init": "'independent': a separate random draw (deepmind `_make_initial_state`). 'copy': "
                   "byol-pytorch (`deepcopy` in `_get_target_encoder`), lightly examples (`copy.deepcopy` of "
                   "backbone and head), solo-learn (`initialize_momentum_params`), edifice (docs). "
                   "'copy_encoder': the encoder copied, the projector drawn apart (lightly's imagenet benchmark: "
                   "`copy.deepcopy(self.backbone)`, a fresh `BYOLProjectionHead()`). d9.",
    "bn_eps": "Batch-norm eps inside the square root: 1e-5 everywhere (Haiku `bn_config`, torch `BatchNorm1d`). d6.",
    "bn_decay": "Weight on the old running statistic: 0.9 everywhere (Haiku `decay_rate=0.9`; torch "
                "`momentum=0.1`). d6.",
    "bn_running": "Running statistics. 'haiku': biased batch variance, zero-debiased EMA (deepmind: "
                  "`hk.ExponentialMovingAverage`). 'torch': unbiased n/(n-1) variance, plain EMA from mean 0, "
                  "var 1 (byol-pytorch, lightly, solo-learn: `nn.BatchNorm1d`). d6. Before the first update "
                  "byol-ref holds mean 0, var 1, count 0 in both modes; Haiku's untouched `average` is 0 for the "
                  "variance too, so only an eval-mode forward before any training step differs (the first "
                  "update ignores the old value at count 0).",
    "bn_var": "Batch variance used to normalise (always biased). 'one_pass' E[x^2] - mean^2: deepmind (Haiku "
              "`batch_norm.py`). 'two_pass' mean((x - mean)^2): byol-pytorch, lightly, solo-learn (torch "
              "kernel, Welford), edifice (Axon). d5.",
    "ln_eps": "Layer-norm eps: 1e-5 (Axon `layer_norm`; only used by layout/norm 'layer').",
    "ln_var": "Layer-norm variance (always biased): 'two_pass' mean((x - mean)^2), as Axon's `layer_norm` computes "
              "it through `Nx.variance` (edifice); 'one_pass' E[x^2] - mean^2, what `Axon.Shared.mean_and_variance` "
              "computes in other Axon versions (byol-ref clamps it at 0, Axon does not: only a near-constant "
              "sample can tell): check the one your Edifice runs on. Only used by layout/norm 'layer' (and 'group').",
    "views": "How the two views meet batch norm. 'separate': one pass per view, statistics per view, two "
             "running-stat updates per step (deepmind `apply_once_fn` per view; lightly; solo-learn). 'concat': "
             "both views as one batch of 2N (byol-pytorch since commit 40565b7, 2023-11, `torch.cat((image_one, "
             "image_two))`; its earlier versions forward each view on its own: `--set views=separate`). Data "
             "parallel without SyncBN (or gradient accumulation) takes the statistics per replica (micro-batch): "
             "`--set bn_shards=S` (`Config.bn_shards`, `bn_shard_running`). d4, d7, d24.",
    "target_bn": "Target batch norm mode: 'batch' (training-mode statistics) in every implementation; "
                 "'running' is an ablation. d8.",
    "norm_eps_mode": "l2-normalisation epsilon form. 'sq_norm': x rsqrt(max(||x||^2, eps)) (deepmind "
                     "`helpers.l2_normalize`). 'norm': x / max(||x||, eps) (byol-pytorch `F.normalize`; lightly "
                     "and solo-learn via `F.cosine_similarity`, which in PyTorch >= 1.12 clamps each norm; its "
                     "gradient differs for a norm at or below eps, derivations section 5). "
                     "'add': x / sqrt(||x||^2 + eps) (edifice). d1, d2.",
    "norm_eps": "The epsilon of norm_eps_mode: 1e-12 (deepmind, byol-pytorch), 1e-8 (lightly and solo-learn: "
                "`cosine_similarity` eps; edifice: additive). A norm_eps_mode set over a preset's brings its own "
                "default eps (sq_norm and norm 1e-12, add 1e-8) where the preset's eps is its mode's default. d1.",
    "loss_form": "Per-pair loss. 'mse' ||n(p) - n(z)||^2 (deepmind `regression_loss`); '2-2cos' (byol-pytorch "
                 "`loss_fn`, solo-learn `byol_loss_func`, edifice `loss`; lightly's imagenet benchmark, see "
                 "sym_reduce); 'neg_cos' -cos (lightly `NegativeCosineSimilarity`, as its examples use it). d3.",
    "symmetric": "Both directions l(p1, z'2) + l(p2, z'1) (deepmind, byol-pytorch, lightly, solo-learn) or only "
                 "l(p1, z'2) (edifice `loss`). d3.",
    "sym_reduce": "How the two directions combine: 'sum' (deepmind, byol-pytorch `loss_one + loss_two`, "
                  "solo-learn loop over views) or 'mean' (lightly examples `0.5 * (criterion(p0, z1) + "
                  "criterion(p1, z0))`). The lightly preset is its imagenet benchmark (`benchmarks/imagenet/"
                  "resnet50/byol.py`), whose LARS, lr and schedules it takes: `2 * criterion(z0, p1) + 2 * "
                  "criterion(z1, p0)`, 2 (-c1) + 2 (-c2), which is loss_form '2-2cos' with 'sum' minus the constant "
                  "4, so every gradient and update agrees and only the reported loss is 4 higher here (checked "
                  "against lightly's code). Its examples' mean of -cos has a 4x smaller gradient, which under LARS "
                  "shifts the weight-decay balance (lightly PR #1286: summing raised 100-epoch top-1 from 55.0 to "
                  "61.8): loss_form='neg_cos', sym_reduce='mean'. d3.",
    "optimizer": "'lars' (deepmind `optimizers.py`; lightly ImageNet benchmark; solo-learn configs), 'adam' "
                 "(byol-pytorch README: Adam lr 3e-4), 'adamw' (edifice ships no optimiser: byol-ref's default).",
    "lr": "Base learning rate (peak = lr * B / lr_batch_scale): deepmind 0.2 (1000 epochs), lightly 0.45 "
          "(`benchmarks/imagenet/resnet50/byol.py`, LARS), solo-learn 1.0 (cifar `byol.yaml`), byol-pytorch 3e-4 "
          "(README), "
          "edifice 2e-3 (byol-ref's default). a6, d15.",
    "lr_batch_scale": "Linear-scaling denominator: 256 (deepmind, lightly, solo-learn `lr * B / 256`); 0 disables "
                      "the scaling (byol-pytorch, edifice: the lr is used as given).",
    "weight_decay": "Weight decay: deepmind 1.5e-6 (1000 epochs), lightly 1e-6, solo-learn 1e-5 (cifar), "
                    "byol-pytorch 0 (Adam default), edifice 1e-6 (byol-ref's default). d15.",
    "momentum": "SGD/LARS momentum: 0.9 (deepmind, lightly, solo-learn). d15.",
    "lars_eta": "LARS trust coefficient: 1e-3 (deepmind, lightly); 0.02 (solo-learn cifar `byol.yaml`). d15.",
    "lars_trust_ratio": "'norm_of_sum' eta ||p|| / ||g + wd p|| (deepmind `scale_by_lars`) or 'sum_of_norms' "
                        "eta ||p|| / (||g|| + wd ||p|| + eps) with neither wd nor scaling when a norm is 0 "
                        "(lightly `utils/lars.py`, solo-learn `utils/lars.py`). d13.",
    "lars_eps": "Added to the LARS denominator: 0 (deepmind), 1e-8 (lightly, solo-learn). d13.",
    "lars_clip_lr": "solo-learn `clip_lr` (True in cifar `byol.yaml`): the step is min(r, lr) u. d13.",
    "lars_only_with_wd": "A tensor without weight decay skips LARS: True in lightly (`utils/lars.py` scales only "
                         "`if weight_decay != 0`, per param group, so weight_decay = 0 makes its LARS momentum "
                         "SGD); False in deepmind and solo-learn, whose filters alone decide. d13.",
    "exclude": "Which tensors skip weight decay and LARS. 'name': biases and norm params (deepmind "
               "`exclude_bias_and_norm`; lightly's wd = 0 param groups, which skip LARS too, are exactly these "
               "here, with lars_only_with_wd). 'ndim': ndim <= 1 no wd, ndim == 1 no LARS (solo-learn "
               "`exclude_bias_n_norm`). 'none': byol-pytorch (plain torch Adam). d14.",
    "warmup_epochs": "Linear warm-up length in epochs, whatever the run's (capped at it): 10 in deepmind (W = 10 "
                     "x 1,281,167 // B steps at every length, `configs/byol.py`), lightly (`int(steps per epoch x "
                     "10)`, `benchmarks/imagenet/resnet50/byol.py`) and solo-learn (`scheduler.warmup_epochs`, "
                     "default 10); byol-pytorch, edifice 0. byol-ref warms up over W = warmup_epochs x floor(N "
                     "/ B) steps, rounded half up, of its K = epochs x floor(N / B) (each epoch's partial batch "
                     "dropped, as in lightly and solo-learn); deepmind's endless stream has K = floor(epochs x N / "
                     "B) and W = floor(10 x N / B), a few steps more. A trace has no epochs: `byol-ref trace` takes "
                     "`--total-steps` and `--warmup-steps` (default 0). a6, d16.",
    "warmup_start": "Learning rate at warm-up step 0: 0 (deepmind, lightly), 3e-5 (solo-learn "
                    "`warmup_start_lr`). d16.",
    "warmup_offset": "0: lr_k = peak k / W, so lr_0 = 0 (deepmind `learning_schedule`); 1: peak (k + 1) / W "
                     "(lightly `CosineWarmupScheduler`). d16.",
    "warmup_denominator": "'W': the warm-up divides by W (deepmind, lightly). 'W-1': by W - 1, so the peak comes "
                          "one step early and is held for two (solo-learn `LinearWarmupCosineAnnealingLR`, which "
                          "adds (peak - warmup_start) / (W - 1) per step). Checked against solo-learn's code. d16.",
    "lr_rounding": "'float32': the learning rate as deepmind's `learning_schedule` returns it, even under "
                   "`jax_enable_x64`: with a warm-up (W > 0) the warm-up is float32 arithmetic, "
                   "float32(float32(k / W) * float32(peak)) (`global_step.astype(jnp.float32)`), and `jnp.where` "
                   "makes the cosine phase float32 too; with W = 0 nothing is rounded. A float64 run of the official "
                   "code differs from the exact formula by up to ~1.5e-7 relative in the warm-up and ~6e-8 after it, "
                   "which a 1e-9 comparison sees. 'exact': the formula in float64 (lightly, solo-learn: Python "
                   "floats; byol-pytorch and edifice have no schedule). Checked against the official code under "
                   "JAX x64. a6.",
    "cosine_denominator": "'K-W': the cosine runs over the K - W steps after the warm-up and reaches the end value "
                          "at k = K (deepmind, solo-learn). 'K-W-1': lightly `CosineWarmupScheduler` calls "
                          "`cosine_schedule(k - W, K - W)`, which divides by K - W - 1 and holds the end value "
                          "from k = K - 1. Checked against lightly's code. d16.",
    "final_lr_ratio": "End of the cosine decay as a fraction of the peak (-> TrainConfig.final_lr): 0 (deepmind, "
                      "solo-learn `min_lr=0`), 0.001 (lightly `CosineWarmupScheduler` end_value), 1 = a constant "
                      "learning rate (byol-pytorch README: fixed Adam lr; edifice: no schedule). d16.",
    "tau_base": "Target EMA rate at step 0: 0.996 (deepmind, paper; edifice `momentum`), 0.99 (byol-pytorch "
                "`moving_average_decay`, lightly benchmarks (its BYOL example: 0.996, per epoch: "
                "`--set tau_interval=epoch`), solo-learn `momentum.base_tau`, formerly `base_tau_momentum`). a5, d10.",
    "tau_schedule": "'cosine' tau -> 1 (deepmind `target_ema`, lightly `cosine_schedule`, solo-learn "
                    "`MomentumUpdater`) or 'constant' (byol-pytorch `EMA(beta)`, edifice `ema_update`). d10.",
    "tau_denominator": "'K' (deepmind, solo-learn) or 'K-1' (lightly `cosine_schedule`: tau = 1 from k = K-1). d10.",
    "ema_when": "'post_step': EMA with the updated online params after the optimiser (deepmind `_update_fn`; "
                "byol-pytorch `update_moving_average` after `opt.step()`; solo-learn `on_train_batch_end`; "
                "edifice, by convention). 'pre_forward': before the forward, with the old params (lightly "
                "examples: `update_momentum` at the top of `training_step`). d11.",
    "ema_form": "How the target EMA is rounded (the same average in exact arithmetic; rounded, an ulp or so "
                "apart per step). 'increment': xi + (1 - tau) (theta - xi) (deepmind `_update_fn`). 'weighted': "
                "tau xi + (1 - tau) theta, the paper's eq. 1 (byol-pytorch `update_average`: old * beta + "
                "(1 - beta) * new; lightly `update_momentum`; solo-learn `MomentumUpdater.update`; edifice "
                "`ema_update`). a1, d10.",
    "ema_scope": "What the target EMA averages. 'params': every target parameter incl. BN gamma/beta, never "
                 "the running statistics (all five: deepmind averages all `hk.Params` and no `hk.State`; "
                 "byol-pytorch, lightly, solo-learn iterate `.parameters()`; edifice matches params by name; "
                 "the official EMA also averages a target predictor that is never used, which byol-ref's target "
                 "does not have). 'params+buffers': also average the running mean and variance (timm's "
                 "ModelEma-style state_dict EMA; an option, no preset uses it). d8, d12. Honoured by "
                 "`byol-ref trace`; `byol-ref train` supports 'params' only.",
}


@dataclass(frozen=True)
class Preset:
    """(Docstring generated from FIELD_DOCS below.)"""

    name: str = "deepmind"
    # model.Config conventions
    layout: str = "paper"
    norm: str = "batch"
    hidden_bias: bool = True
    head_bias: bool = False
    init: str = "haiku"
    target_init: str = "independent"
    bn_eps: float = 1e-5
    bn_decay: float = 0.9
    bn_running: str = "haiku"
    bn_var: str = "one_pass"
    ln_eps: float = 1e-5
    ln_var: str = "two_pass"
    views: str = "separate"
    target_bn: str = "batch"
    norm_eps_mode: str = "sq_norm"
    norm_eps: float = 1e-12
    loss_form: str = "mse"
    symmetric: bool = True
    sym_reduce: str = "sum"
    # train.TrainConfig conventions
    optimizer: str = "lars"
    lr: float = 0.2
    lr_batch_scale: int = 256
    weight_decay: float = 1.5e-6
    momentum: float = 0.9
    lars_eta: float = 1e-3
    lars_trust_ratio: str = "norm_of_sum"
    lars_eps: float = 0.0
    lars_clip_lr: bool = False
    lars_only_with_wd: bool = False
    exclude: str = "name"
    warmup_epochs: float = 10.0
    warmup_start: float = 0.0
    warmup_offset: int = 0
    warmup_denominator: str = "W"
    cosine_denominator: str = "K-W"
    lr_rounding: str = "float32"
    final_lr_ratio: float = 0.0
    tau_base: float = 0.996
    tau_schedule: str = "cosine"
    tau_denominator: str = "K"
    ema_when: str = "post_step"
    ema_form: str = "increment"
    ema_scope: str = "params"

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"Preset.name must be a non-empty str, got {self.name!r}")
        if self.warmup_epochs is None:  # (TrainConfig's None, 5% of the run, is byol-ref's default, not a preset's)
            raise TypeError("a preset's warmup_epochs is a number of epochs, got None: TrainConfig's None (5% of "
                            "the run) is byol-ref's own default; give the epochs, or build TrainConfig directly")
        object.__setattr__(self, "warmup_epochs", check_real(self.warmup_epochs, "warmup_epochs", 0, None))
        object.__setattr__(self, "final_lr_ratio", check_real(self.final_lr_ratio, "final_lr_ratio", 0, None))
        check_choice(self.ema_scope, "ema_scope", ("params", "params+buffers"))
        # Validate every other field through the dataclasses that own it (one source of truth).
        self.config(encoder_dim=1)
        self.train_config(epochs=1, batch_size=2)

    # ------------------------------------------------------------------ building configs

    def model_kwargs(self) -> dict:
        """The ``model.Config`` fields this preset sets (a new dict)."""
        return {k: getattr(self, k) for k in MODEL_FIELDS}

    def train_kwargs(self, *, epochs: float, batch_size: int) -> dict:
        """The ``train.TrainConfig`` fields this preset sets, resolved for a run.

        Args:
            epochs: the run length (warmup_epochs is capped at it).
            batch_size: the batch (final_lr = final_lr_ratio * lr * batch_size / lr_batch_scale).
        """
        kw = {k: getattr(self, k) for k in TRAIN_FIELDS}
        kw["warmup_epochs"] = min(self.warmup_epochs, epochs)
        scale = self.lr_batch_scale or batch_size
        kw["final_lr"] = self.final_lr_ratio * self.lr * batch_size / scale
        return kw

    def config(self, *, encoder_dim: int, **extra):
        """A ``model.Config`` with this preset's conventions.

        Args:
            encoder_dim: input width D.
            **extra: any other Config field (sizes, ``use_predictor``, ``stop_gradient``, ...); a
                preset field passed here overrides the preset.
        """
        from .model import Config

        return Config(encoder_dim=encoder_dim, **{**self.model_kwargs(), **extra})

    def train_config(self, *, epochs: int = 300, batch_size: int = 256, **extra):
        """A ``train.TrainConfig`` with this preset's conventions.

        Args:
            epochs, batch_size: the run (they also resolve warmup_epochs and final_lr_ratio); by default
                TrainConfig's own, 300 and 256.
            **extra: any other TrainConfig field; ``final_lr`` given here wins over final_lr_ratio.
                A preset field given here (``lr``, ``lr_batch_scale``, ``warmup_epochs``, ...) acts as
                if the preset had it, so final_lr follows an overridden lr, and warmup_epochs is
                capped at the run.
        """
        from .train import TrainConfig

        own = {k: extra.pop(k) for k in TRAIN_FIELDS if k in extra}
        preset = self.replace(**own) if own else self
        return TrainConfig(epochs=epochs, batch_size=batch_size,
                           **{**preset.train_kwargs(epochs=epochs, batch_size=batch_size), **extra})

    # ------------------------------------------------------------------ plumbing

    def replace(self, **changes) -> "Preset":
        """A copy with some fields changed (unknown names are a ValueError listing the fields).

        As ``Config.replace``: a new ``norm_eps_mode`` takes that mode's default eps unless
        ``norm_eps`` is changed too or holds other than its mode's default
        (``get_preset("deepmind", norm_eps_mode="add")`` adds 1e-8, not sq_norm's 1e-12)."""
        from .losses import eps_for_new_mode

        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise ValueError(f"unknown preset field(s) {unknown}; preset fields: {preset_field_names()}")
        if "norm_eps" not in changes:
            mode = changes.get("norm_eps_mode", self.norm_eps_mode)
            changes = {**changes, "norm_eps": eps_for_new_mode(self.norm_eps_mode, self.norm_eps, mode)}
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Preset":
        """The preset a ``to_dict`` saved. A dict from before ``lr_rounding`` existed was computed with
        the exact schedule, and one from before ``ema_form`` with the weighted EMA, so a missing
        ``lr_rounding`` reads as ``"exact"`` and a missing ``ema_form`` as ``"weighted"``, not the
        fields' defaults."""
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown preset field(s) {unknown}; preset fields: {preset_field_names()}")
        return cls(**{"lr_rounding": "exact", "ema_form": "weighted", **d})


def preset_field_names() -> list:
    """Every Preset field except ``name``, in declaration order."""
    return [f.name for f in fields(Preset) if f.name != "name"]


def _doc() -> str:
    lines = ["The numeric conventions of one BYOL implementation (BYOL_FACTS section d).", "",
             "Defaults are the ``deepmind`` preset. Build one with :func:`get_preset`.", "", "Attributes:"]
    for f in fields(Preset):
        lines.append(f"    {f.name}: {FIELD_DOCS[f.name]}")
    return "\n".join(lines)


Preset.__doc__ = _doc()

PRESETS = {
    "deepmind": Preset(),
    "byol-pytorch": Preset(
        name="byol-pytorch", head_bias=True, init="torch", target_init="copy", bn_running="torch",
        bn_var="two_pass", views="concat", norm_eps_mode="norm", norm_eps=1e-12, loss_form="2-2cos",
        optimizer="adam", lr=3e-4, lr_batch_scale=0, weight_decay=0.0, exclude="none", warmup_epochs=0.0,
        final_lr_ratio=1.0, tau_base=0.99, tau_schedule="constant", lr_rounding="exact", ema_form="weighted"),
    "lightly": Preset(
        name="lightly", hidden_bias=False, head_bias=True, init="torch", target_init="copy_encoder",
        bn_running="torch",
        bn_var="two_pass", norm_eps_mode="norm", norm_eps=1e-8, loss_form="2-2cos", sym_reduce="sum",
        optimizer="lars", lr=0.45, weight_decay=1e-6, lars_trust_ratio="sum_of_norms", lars_eps=1e-8,
        lars_only_with_wd=True, exclude="name", warmup_epochs=10.0, warmup_offset=1, cosine_denominator="K-W-1",
        final_lr_ratio=0.001,
        tau_base=0.99, tau_denominator="K-1", ema_when="pre_forward", lr_rounding="exact",
        ema_form="weighted"),
    "solo-learn": Preset(
        name="solo-learn", head_bias=True, init="torch", target_init="copy", bn_running="torch",
        bn_var="two_pass", norm_eps_mode="norm", norm_eps=1e-8, loss_form="2-2cos", optimizer="lars", lr=1.0,
        weight_decay=1e-5, lars_eta=0.02, lars_trust_ratio="sum_of_norms", lars_eps=1e-8, lars_clip_lr=True,
        exclude="ndim", warmup_epochs=10.0, warmup_start=3e-5, warmup_denominator="W-1", tau_base=0.99,
        lr_rounding="exact", ema_form="weighted"),
    "edifice": Preset(
        name="edifice", layout="edifice", norm="layer", hidden_bias=True, head_bias=True, init="glorot",
        target_init="copy", bn_var="two_pass", norm_eps_mode="add", norm_eps=1e-8, loss_form="2-2cos",
        symmetric=False, optimizer="adamw", lr=2e-3, lr_batch_scale=0, weight_decay=1e-6, warmup_epochs=0.0,
        final_lr_ratio=1.0, tau_base=0.996, tau_schedule="constant", lr_rounding="exact",
        ema_form="weighted"),
}


def preset_names() -> list:
    """The shipped preset names, the default (``deepmind``) first."""
    return list(PRESETS)


def get_preset(name: str = "deepmind", **overrides) -> Preset:
    """A shipped preset, with any field overridden.

    Args:
        name: one of :func:`preset_names`.
        **overrides: preset fields to change (``get_preset("lightly", views="concat")``).

    Returns:
        Preset.

    Raises:
        ValueError: unknown name or field, or an invalid value.
    """
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {preset_names()}, got {name!r}")
    return PRESETS[name].replace(**overrides) if overrides else PRESETS[name]


def presets_markdown() -> str:
    """A Markdown table of every preset and field, then each field's documentation (docs/presets.md)."""
    names = preset_names()
    out = ["# Presets", "", "Generated by `byol_ref.presets.presets_markdown()`; do not edit by hand.", "",
           "| field | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for f in preset_field_names():
        out.append(f"| `{f}` | " + " | ".join(f"`{getattr(PRESETS[n], f)!r}`" for n in names) + " |")
    out += ["", "## Fields", ""]
    for f in preset_field_names():
        out.append(f"- **`{f}`**: {FIELD_DOCS[f]}")
    return "\n".join(out) + "\n"
