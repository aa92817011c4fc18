"""byol-ref's numeric conventions drawn together: the Config and TrainConfig fields on which the implementations
differ, for the tests that check gradients, fast paths, devices and resume at combinations no fixed list holds.

Two ways to draw them: hypothesis strategies (``model_conventions``, ``train_conventions``), which the search
profile widens at will; and covering designs (``MODEL_PAIRS``, ``TRAIN_PAIRS``): a few dozen rows in which every
value of every field meets every value of every other field at least once, which random draws do not promise
(25 of hypothesis's derandomized draws put no batch norm after the edifice layout's ReLU)."""
import itertools
import random

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
    sem_temperature=[0.5, 2.0], stop_gradient=[True, False])

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


def fit_model(kw: dict) -> dict:
    """A row of MODEL as Config takes it: batch statistics per shard only with batch norm, which alone takes them
    (every normalised width the tests build is a multiple of 2, so any norm_groups drawn divides it)."""
    norm = kw["norm"] or ("batch" if kw["layout"] == "paper" else "layer")
    return {**kw, "bn_shards": kw["bn_shards"] if norm == "batch" else 1}


def fit_train(kw: dict, norm: str | None) -> dict:
    """A row of TRAIN as TrainConfig takes it, for a model of ``norm``: the data-dependent init only for the
    affine norm it initialises; lightly's warm-up offset only with a denominator of W (with solo-learn's W-1 it
    would overshoot the peak, and is refused)."""
    return {**kw, "data_init": kw["data_init"] and norm == "affine",
            "warmup_denominator": "W" if kw["warmup_offset"] else kw["warmup_denominator"]}


def pair_ids(rows: list) -> list:
    """pytest ids for the rows of a design: pairs0, pairs1, ..."""
    return [f"pairs{i}" for i in range(len(rows))]


def kwargs(row: dict) -> dict:
    """The keyword arguments of a row: a field drawn as None is left out (its default)."""
    return {k: v for k, v in row.items() if v is not None}


def _fields(table: dict) -> st.SearchStrategy:
    return st.fixed_dictionaries({k: st.sampled_from(v) for k, v in table.items()})


def model_conventions() -> st.SearchStrategy:
    """Config keyword arguments, stop_gradient among them (see fit_model)."""
    return _fields(MODEL).map(lambda kw: kwargs(fit_model(kw)))


def train_conventions(norm: str | None) -> st.SearchStrategy:
    """TrainConfig keyword arguments for a model of ``norm`` (see fit_train)."""
    return _fields(TRAIN).map(lambda kw: kwargs(fit_train(kw, norm)))


def pairwise(table: dict, fix, *, seed: int = 0, candidates: int = 5) -> list:
    """Rows of ``table`` (one value per field, then ``fix``ed) in which every pair of values of two fields that
    some fixed row can hold appears at least once: a greedy covering design (as AETG builds one). Each row is the
    best of ``candidates``: each starts from a pair not yet covered and gives every other field, in a random
    order, the value that covers most pairs not yet covered with the fields set before it. Deterministic: the
    same rows in every process."""
    rng = random.Random(seed)
    fields = list(table)

    def pairs(row):
        return {((a, row[a]), (b, row[b])) for a, b in itertools.combinations(fields, 2)}

    def holds(row, pair):
        return all(row[f] == v and type(row[f]) is type(v) for f, v in pair)

    def complete(pair):
        row = dict(pair)
        for f in rng.sample(fields, len(fields)):
            if f not in row:
                row[f] = max(rng.sample(table[f], len(table[f])),
                             key=lambda v: sum(((g, row[g]), (f, v)) in todo or ((f, v), (g, row[g])) in todo
                                               for g in row))
        return fix(row)

    todo = [((a, u), (b, v)) for a, b in itertools.combinations(fields, 2) for u in table[a] for v in table[b]]
    # A pair that no fixed row holds (bn_shards=2 with layer norm, say) is not asked for. Only a field that fix
    # changes can lose its value: a pair of two others is held by any row that has it.
    samples = [{f: rng.choice(table[f]) for f in fields} for _ in range(200)]
    changed = {f for row in samples for f, v in fix(dict(row)).items() if not holds(row, ((f, v),))}
    todo = {p for p in todo if not {p[0][0], p[1][0]} & changed
            or any(holds(fix({**{f: rng.choice(table[f]) for f in fields}, **dict(p)}), p) for _ in range(50))}
    rows = []
    while todo:
        pool = sorted(todo, key=repr)
        best = max((complete(rng.choice(pool)) for _ in range(candidates)), key=lambda row: len(pairs(row) & todo))
        if not pairs(best) & todo:  # (the fix undid every candidate's starting pair: those pairs go)
            todo -= {p for p in pool if not any(holds(complete(p), p) for _ in range(candidates))}
            continue
        rows.append(best)
        todo -= pairs(best)
    return rows


# Every pair of model conventions; and every pair among the model's and the training's together (as
# (Config keyword arguments, TrainConfig keyword arguments)).
MODEL_ROWS = pairwise(MODEL, fit_model)
TRAIN_ROWS = pairwise({**MODEL, **TRAIN}, lambda row: fit_train(fit_model(row), row["norm"]), seed=1)
MODEL_PAIRS = [kwargs(row) for row in MODEL_ROWS]
TRAIN_PAIRS = [(kwargs({k: row[k] for k in MODEL}), kwargs({k: row[k] for k in TRAIN})) for row in TRAIN_ROWS]
