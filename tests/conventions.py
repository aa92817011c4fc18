"""Hypothesis strategies that draw byol-ref's numeric conventions together: the Config and TrainConfig fields on
which the implementations differ, for the tests that check gradients and resume at combinations no fixed list
holds."""
from hypothesis import strategies as st

# Each field's values; None leaves the layout's own (norm, head_bias, init, eps mode, loss form, symmetry).
MODEL = dict(
    layout=["paper", "edifice"], norm=[None, "batch", "layer", "group", "affine", "none"], norm_groups=[1, 2],
    weight_std=[False, True], ws_eps=[1e-5, 1e-3], hidden_bias=[True, False], encoder_bias=[None, True, False],
    head_bias=[None, True, False], use_predictor=[True, False], init=[None, "haiku", "torch", "glorot"],
    target_init=["copy", "independent", "copy_encoder"], bn_eps=[1e-5, 1e-3], bn_decay=[0.9, 0.99],
    bn_running=["haiku", "torch"], bn_var=["two_pass", "one_pass"], ln_eps=[1e-5, 1e-3],
    ln_var=["two_pass", "one_pass"], views=["separate", "concat"], bn_shards=[1, 2],
    bn_shard_running=["first", "sequential"], target_bn=["batch", "running"],
    norm_eps_mode=[None, "sq_norm", "norm", "add"], loss_form=[None, "mse", "2-2cos", "neg_cos"],
    symmetric=[None, True, False], sym_reduce=["sum", "mean"], sem_simplices=[0, 2], sem_simplex_dim=[2, 3],
    sem_temperature=[0.5, 2.0])

TRAIN = dict(
    optimizer=["adamw", "adam", "sgd", "lars"], lr=[1e-3, 0.05], lr_batch_scale=[256, 0], weight_decay=[0.0, 1e-4],
    nesterov=[False, True], lars_trust_ratio=["norm_of_sum", "sum_of_norms"], lars_eps=[0.0, 1e-9],
    lars_clip_lr=[False, True], lars_only_with_wd=[False, True], exclude=["name", "ndim", "none"],
    warmup_epochs=[None, 0.0, 1.0], final_lr=[0.0, 1e-4], warmup_start=[0.0, 1e-4],
    cosine_denominator=["K-W", "K-W-1"], lr_interval=["step", "epoch"], tau_base=[0.0, 0.9, 0.996, 1.0],
    tau_schedule=["cosine", "constant"], tau_denominator=["K", "K-1"], tau_interval=["step", "epoch"],
    ema_when=["post_step", "pre_forward"], predictor_lr_mult=[0.0, 1.0, 10.0], data_init=[False, True],
    ema_form=["weighted", "increment"], warmup_offset=[0, 1], warmup_denominator=["W", "W-1"],
    lr_rounding=["exact", "float32"], momentum=[0.0, 0.9], lars_eta=[1e-3, 0.02], dtype=["float64", "float32"],
    log_every=[1, 3], eval_every=[0, 5], monitor_rows=[0, 20], checkpoint_every=[0, 2, 5])


def _fields(table: dict) -> st.SearchStrategy:
    """A dict of one value of each field of ``table``, the fields drawn as None left out."""
    drawn = st.fixed_dictionaries({k: st.sampled_from(v) for k, v in table.items()})
    return drawn.map(lambda kw: {k: v for k, v in kw.items() if v is not None})


def model_conventions() -> st.SearchStrategy:
    """Config keyword arguments (every normalised width a multiple of 2 takes any norm_groups drawn); batch
    statistics per shard only with batch norm, which alone takes them."""
    def fit(kw):
        norm = kw.get("norm", "batch" if kw["layout"] == "paper" else "layer")
        return {**kw, "bn_shards": kw["bn_shards"] if norm == "batch" else 1}
    return _fields(MODEL).map(fit)


def train_conventions(norm: str | None) -> st.SearchStrategy:
    """TrainConfig keyword arguments for a model of ``norm``: the data-dependent init only for the affine norm it
    initialises; lightly's warm-up offset only with a denominator of W (with solo-learn's W-1 it would overshoot
    the peak, and is refused)."""
    def fit(kw):
        return {**kw, "data_init": kw["data_init"] and norm == "affine",
                "warmup_denominator": "W" if kw["warmup_offset"] else kw["warmup_denominator"]}
    return _fields(TRAIN).map(fit)
