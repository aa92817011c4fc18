"""Check the official BYOL code (deepmind-research/byol, JAX + Haiku) against byol-ref, step by step.

    git clone https://github.com/google-deepmind/deepmind-research   # the official code
    pip install jax dm-haiku optax dm-tree                             # what its byol/utils import
    python examples/crosscheck_official.py --byol-src deepmind-research [--steps 6] [--warmup 3] [--workdir DIR]
        [--total-steps K] [--start-step S] [--lr LR] [--weight-decay WD] [--eta ETA] [--momentum M]
        [--tau-base T] [--bn-decay DECAY] [--bn-eps EPS] [--dims D,H,P,Q,PH] [--batch N] [--seed SEED]

``--byol-src`` is the folder that holds ``byol/`` (or set ``BYOL_OFFICIAL_SRC``). The official
``byol_experiment.py`` imports acme and a TPU input pipeline, so this script does not import it;
it imports the official building blocks and puts them together in the order ``_forward`` and
``_update_fn`` use them:

1. the network of ``_forward``: an encoder, ``networks.MLP`` as projector and predictor, each view
   through its own pass (``apply_once_fn``), Haiku batch norm with the official ``bn_config``
   (decay 0.9, eps 1e-5, scale and offset; ``--bn-decay`` and ``--bn-eps`` set the decay rate and eps
   there and byol-ref's ``bn_decay`` and ``bn_eps``). The encoder stands in for the ResNet: Linear -> BN ->
   ReLU, twice, in Haiku (byol-ref's MLP encoder). The online classifier is left out: it sees the
   representation through ``stop_gradient`` and changes no other tensor;
2. the step of ``_update_fn``: the loss ``helpers.regression_loss`` both ways, summed, batch mean;
   ``jax.grad`` with respect to the online params only, with both networks' batch-norm state
   updated in training mode; ``schedules.learning_schedule``; ``optimizers.lars`` with
   ``exclude_bias_and_norm`` for both filters; then the target EMA with ``schedules.target_ema``
   and the *updated* online params;
3. float64 throughout (``jax_enable_x64``), from byol-ref's seeded params and views (the online
   and target params are independent draws, as ``_make_initial_state`` makes them).

It records the loss, lr, tau, every gradient, the updated online and target params, LARS's
momentum and every batch-norm running statistic (Haiku's zero-debiased ``average`` and its
``counter``) under byol-ref's trace names, traces the same steps with ``byol-ref trace --preset
deepmind`` and diffs at rtol 1e-9, atol 1e-10. It does so twice: with the preset as it is
(``lr_rounding="float32"``), which must agree on every tensor, and with ``lr_rounding="exact"``,
which must diverge at the first step whose learning rate float32 rounds by more than the tolerance
(``step1.lr`` at the defaults), or earlier, downstream of a smaller rounding, but not before the first
rate that float32 rounds at all: ``learning_schedule`` casts the step to float32, and its ``jnp.where``
keeps the whole schedule float32 even under ``jax_enable_x64``. (With ``--warmup 0`` nothing is
rounded, and both must agree.) Exit status 0 when both hold, non-zero otherwise,
77 (skipped) without JAX, Haiku, optax and dm-tree or without ``--byol-src``.

The official code predates JAX's removal of ``jax.tree_multimap``; the script restores that name
(as ``jax.tree_util.tree_map``) before importing it.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

from _args import add_start_step, add_workdir, make_workdir, number, parse_dims, schedule_steps  # examples/_args.py
from _skip import skip  # examples/_skip.py: exit 77 (skipped) when this check cannot run here

try:
    import jax
    import jax.numpy as jnp
    import haiku as hk
    import optax
    import tree  # noqa: F401  (dm-tree: optimizers.py imports it)
except ImportError as exc:  # pragma: no cover - the message is the point
    skip(f"this check runs the official BYOL code, which needs JAX, Haiku, optax and dm-tree ({exc}); install "
         "them with `pip install jax dm-haiku optax dm-tree`. byol-ref does not need them; see docs/verifying.md.",
         __doc__)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from byol_ref.cli import main as byol_ref_cli  # noqa: E402
from byol_ref.diff import diff_files  # noqa: E402

jax.config.update("jax_enable_x64", True)
if not hasattr(jax, "tree_multimap"):  # removed in JAX 0.3.16; the official code still calls it
    jax.tree_multimap = jax.tree_util.tree_map
if not hasattr(jax, "tree_map"):
    jax.tree_map = jax.tree_util.tree_map

D, H, PH, P, Q, N = 6, 7, 9, 3, 5, 8  # input, encoder, projector hidden, projection, predictor hidden, batch
# (the defaults of --dims D,H,P,Q,PH and --batch N; main() sets these module names from them)
LAYER = {"linear": "fc1", "linear_1": "fc2", "batch_norm": "norm1", "batch_norm_1": "norm2"}
PARAM = {"w": "weight", "b": "bias", "scale": "gamma", "offset": "beta"}
BN_DECAY, BN_EPS = 0.9, 1e-5  # the official bn_config's decay_rate and eps (the defaults of --bn-decay, --bn-eps)


def import_official(src):
    """The official byol/utils modules, imported from the checkout ``src``."""
    if not os.path.isfile(os.path.join(src, "byol", "utils", "schedules.py")):
        raise SystemExit(f"--byol-src {src!r} does not hold byol/utils/schedules.py; expected a checkout of "
                         "google-deepmind/deepmind-research (the folder with byol/ in it)")
    sys.path.insert(0, os.path.abspath(src))
    from byol.utils import helpers, networks, optimizers, schedules
    return helpers, networks, optimizers, schedules


def ref_name(module: str, leaf: str | None = None) -> str:
    """Haiku 'projector/~/linear_1' (or 'projector/linear_1') and 'w' -> byol-ref 'projector.fc2.weight'."""
    parts = [p for p in module.split("/") if p != "~"]
    name = f"{parts[0]}.{LAYER[parts[-1]]}"
    return name if leaf is None else f"{name}.{PARAM[leaf]}"


def run_official(official, ref: dict, steps: int, total: int, warmup: int, base_lr: float, weight_decay: float,
                 *, tau_base: float = 0.996, eta: float = 1e-3, momentum: float = 0.9, start: int = 0,
                 bn_decay: float = BN_DECAY, bn_eps: float = BN_EPS):
    """The official step, ``steps`` times from byol-ref's initial state; what it computed, by trace name.

    ``start`` is the global step of the first one (byol-ref's ``--start-step``): the schedules read
    ``start + k``, the trace names stay ``step<k>``. ``bn_decay`` and ``bn_eps`` are the ``decay_rate``
    and ``eps`` of every ``hk.BatchNorm`` (the official ``bn_config``).
    """
    helpers, networks, optimizers, schedules = official
    bn_config = dict(decay_rate=bn_decay, eps=bn_eps, create_scale=True, create_offset=True)

    def forward(inputs):
        def encoder(x):
            x = jax.nn.relu(hk.BatchNorm(**bn_config)(hk.Linear(H)(x), is_training=True))
            return jax.nn.relu(hk.BatchNorm(**bn_config)(hk.Linear(H)(x), is_training=True))
        net = hk.to_module(encoder)(name="encoder")
        projector = networks.MLP(name="projector", hidden_size=PH, output_size=P, bn_config=bn_config)
        predictor = networks.MLP(name="predictor", hidden_size=Q, output_size=P, bn_config=bn_config)

        def apply_once_fn(images, suffix):
            proj_out = projector(net(images), True)
            return {"projection" + suffix: proj_out, "prediction" + suffix: predictor(proj_out, True)}
        return {**apply_once_fn(inputs["view1"], "_view1"), **apply_once_fn(inputs["view2"], "_view2")}

    fwd = hk.without_apply_rng(hk.transform_with_state(forward))
    shapes, state_shapes = fwd.init(jax.random.PRNGKey(0), {"view1": jnp.zeros((N, D)), "view2": jnp.zeros((N, D))})

    def params_from(role):  # byol-ref's arrays in Haiku's tree; the target's unused predictor from the online
        src = role if role == "online" else "online"
        return {m: {k: jnp.asarray(ref[f"init.{src if m.startswith('predictor') else role}.param.{ref_name(m, k)}"])
                    .reshape(v.shape) for k, v in leaves.items()} for m, leaves in shapes.items()}

    def state_from(role):  # Haiku keeps hidden h_t and average h_t / (1 - decay^t); byol-ref keeps the average
        state = {}
        for m, s in state_shapes.items():
            module, ema = m.rsplit("/~/", 1)
            buf = f"init.{'online' if module.startswith('predictor') else role}.buffer.{ref_name(module)}"
            avg = ref[f"{buf}.running_{'mean' if ema == 'mean_ema' else 'var'}"]
            t = int(ref[f"{buf}.count"])
            state[m] = {"counter": jnp.asarray(t, s["counter"].dtype),
                        "average": jnp.asarray(avg).reshape(s["average"].shape),
                        "hidden": jnp.asarray(avg * (1 - bn_decay ** t)).reshape(s["hidden"].shape)}
        return state

    def loss_fn(online_params, target_params, online_state, target_state, inputs):
        online_out, online_state = fwd.apply(online_params, online_state, inputs)
        target_out, target_state = fwd.apply(target_params, target_state, inputs)
        loss = helpers.regression_loss(online_out["prediction_view1"],
                                       jax.lax.stop_gradient(target_out["projection_view2"]))
        loss = loss + helpers.regression_loss(online_out["prediction_view2"],
                                              jax.lax.stop_gradient(target_out["projection_view1"]))
        return jnp.mean(loss), (online_state, target_state)

    def optimizer(lr):
        return optimizers.lars(lr, weight_decay=weight_decay, momentum=momentum, eta=eta,
                               weight_decay_filter=optimizers.exclude_bias_and_norm,
                               lars_adaptation_filter=optimizers.exclude_bias_and_norm)

    online, target = params_from("online"), params_from("target")
    online_state, target_state = state_from("online"), state_from("target")
    opt_state = optimizer(0).init(online)
    seen = {}

    def record(prefix, tree_, role="online"):
        for m, leaves in tree_.items():
            if role == "target" and m.startswith("predictor"):
                continue  # the official target has a predictor nobody uses; byol-ref's target has none
            for k, v in leaves.items():
                name = ref_name(m, k)
                seen[f"{prefix}.{name}"] = np.asarray(v).reshape(ref[f"init.online.param.{name}"].shape)

    def record_state(prefix, state, role):
        for m, s in state.items():
            module, ema = m.rsplit("/~/", 1)
            if role == "target" and module.startswith("predictor"):
                continue
            seen[f"{prefix}.{ref_name(module)}.running_{'mean' if ema == 'mean_ema' else 'var'}"] = \
                np.asarray(s["average"]).ravel()
            seen[f"{prefix}.{ref_name(module)}.count"] = np.asarray(s["counter"], dtype=np.int64)  # Haiku: int32

    for k in range(steps):
        inputs = {v: jnp.asarray(ref[f"step{k}.input.{v}"]) for v in ("view1", "view2")}
        global_step = jnp.asarray(start + k)
        (loss, (online_state, target_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            online, target, online_state, target_state, inputs)
        lr = schedules.learning_schedule(global_step, batch_size=N, base_learning_rate=base_lr,
                                         total_steps=total, warmup_steps=warmup)
        updates, opt_state = optimizer(lr).update(grads, opt_state, online)
        online = optax.apply_updates(online, updates)
        tau = schedules.target_ema(global_step, base_ema=tau_base, max_steps=total)
        target = jax.tree_util.tree_map(lambda x, y: x + (1 - tau) * (y - x), target, online)
        seen[f"step{k}.loss.total"] = np.asarray(loss)
        seen[f"step{k}.lr"] = np.asarray(lr, dtype=np.float64)
        seen[f"step{k}.tau"] = np.asarray(tau)
        record(f"step{k}.online.grad", grads)
        record(f"step{k}.online.param", online)
        record(f"step{k}.target.param", target, "target")
        record(f"step{k}.opt.momentum", opt_state[1].mu)  # chain(add_weight_decay, scale_by_lars, scale)
        record_state(f"step{k}.online.buffer", online_state, "online")
        record_state(f"step{k}.target.buffer", target_state, "target")
    return seen


def main(argv=None) -> int:
    global D, H, PH, P, Q, N
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--byol-src", default=os.environ.get("BYOL_OFFICIAL_SRC"),
                    help="checkout of google-deepmind/deepmind-research (default: $BYOL_OFFICIAL_SRC)")
    ap.add_argument("--steps", type=number(int, 1), default=6, help="training steps to compare (default 6)")
    ap.add_argument("--total-steps", type=number(int, 1), default=10, help="K of the lr and tau schedules (default 10)")
    ap.add_argument("--warmup", type=number(int, 0), default=3,
                    help="warm-up steps W (default 3: 1/3 is not a float32)")
    add_start_step(ap)
    ap.add_argument("--lr", type=number(float, 0), default=5.0,
                    help="base lr (peak lr x N/256; default 5, to move the params)")
    ap.add_argument("--weight-decay", type=number(float, 0), default=0.01, help="LARS weight decay (default 0.01)")
    ap.add_argument("--eta", type=number(float, 0, lo_open=True), default=1e-3,
                    help="LARS trust coefficient eta (default 1e-3)")
    ap.add_argument("--momentum", type=number(float, 0, 1, hi_open=True), default=0.9,
                    help="LARS momentum (default 0.9)")
    ap.add_argument("--tau-base", type=number(float, 0, 1), default=0.996,
                    help="base_ema of target_ema (default 0.996)")
    ap.add_argument("--bn-decay", type=number(float, 0, 1, hi_open=True), default=BN_DECAY,
                    help=f"batch-norm decay_rate, the weight on the old running statistic (default {BN_DECAY})")
    ap.add_argument("--bn-eps", type=number(float, 0, lo_open=True), default=BN_EPS,
                    help=f"batch-norm eps (default {BN_EPS})")
    ap.add_argument("--dims", default=f"{D},{H},{P},{Q},{PH}",
                    help=f"D,H,P,Q,PH: input, encoder width, projection, predictor hidden, projector hidden "
                         f"(default {D},{H},{P},{Q},{PH})")
    ap.add_argument("--batch", type=number(int, 2), default=N, help=f"batch size N per view (default {N})")
    ap.add_argument("--seed", type=number(int, 0), default=0, help="seed of byol-ref's params and views (default 0)")
    add_workdir(ap)
    args = ap.parse_args(argv)
    make_workdir(ap, args.workdir)
    if not args.byol_src:
        skip("this check runs the official BYOL code: clone google-deepmind/deepmind-research and pass "
             "--byol-src (or set BYOL_OFFICIAL_SRC). byol-ref does not need it; see docs/verifying.md.", __doc__)
    D, H, P, Q, PH = parse_dims(ap, args.dims, "D,H,P,Q,PH")
    start, total = schedule_steps(ap, args)
    N = args.batch
    official = import_official(args.byol_src)
    verdicts, lrs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or tmp
        os.makedirs(work, exist_ok=True)
        common = ["--dims", f"{D},{H},{P},{Q},{PH}", "--batch", str(N), "--seed", str(args.seed),
                  "--steps", str(args.steps), "--start-step", str(start),
                  "--total-steps", str(total), "--warmup-steps", str(args.warmup), "--overwrite",
                  "--set", f"lr={args.lr!r}", "--set", f"weight_decay={args.weight_decay!r}",
                  "--set", f"lars_eta={args.eta!r}", "--set", f"momentum={args.momentum!r}",
                  "--set", f"tau_base={args.tau_base!r}", "--set", f"bn_decay={args.bn_decay!r}",
                  "--set", f"bn_eps={args.bn_eps!r}"]
        theirs = os.path.join(work, "official_trace.npz")
        for rounding in ("float32", "exact"):
            ours = os.path.join(work, f"byol_ref_{rounding}.npz")
            if byol_ref_cli(["trace", *common, "--set", f"lr_rounding={rounding}", "--out", ours]) != 0:
                return 2
            with np.load(ours, allow_pickle=False) as z:
                lrs[rounding] = [float(z[f"step{k}.lr"]) for k in range(args.steps)]
                if rounding == "float32":  # the same initial state and views for the official run
                    ref = {k: z[k] for k in z.files if k.startswith("init.") or ".input." in k}
            if rounding == "float32":
                np.savez(theirs, **run_official(official, ref, args.steps, total, args.warmup, args.lr,
                                                args.weight_decay, tau_base=args.tau_base, eta=args.eta,
                                                momentum=args.momentum, start=start, bn_decay=args.bn_decay,
                                                bn_eps=args.bn_eps))
            print(f"\n--- lr_rounding={rounding} ---", flush=True)
            byol_ref_cli(["diff", theirs, ours, "--subset", "--rtol", "1e-9", "--atol", "1e-10"])
            report = diff_files(theirs, ours, subset=True, rtol=1e-9, atol=1e-10)
            verdicts[rounding] = (report.first_divergence, not report.only_a)  # every recorded tensor compared
    # lr_rounding=exact runs the same steps with only the learning rates changed (from step k0, the first whose
    # float32 rate is not the exact one), so it must agree before k0; where some rate differs by more than the
    # tolerance (first at step k1) it must diverge, at that lr or earlier (a difference within the tolerance can
    # grow into one that is not, in a gradient of a later step); with every rate within it, it may still agree.
    differs = [a != b for a, b in zip(lrs["float32"], lrs["exact"])]
    beyond = [abs(a - b) > 1e-9 * max(abs(a), abs(b)) + 1e-10 for a, b in zip(lrs["float32"], lrs["exact"])]
    k0 = differs.index(True) if any(differs) else None
    k1 = beyond.index(True) if any(beyond) else None
    name, complete = verdicts["exact"]
    at = None if name is None else int(name.split(".", 1)[0][len("step"):])
    if k0 is None:
        exact_ok, said = name is None, "lr_rounding=exact agrees too: float32 rounds none of these learning rates."
    elif k1 is None:
        exact_ok = at is None or at >= k0
        said = (f"lr_rounding=exact moves the learning rates by less than the tolerance (first at step {k0}) and "
                + ("agrees." if at is None else f"diverges at {name}, downstream of them."))
    else:
        exact_ok = at is not None and k0 <= at <= k1
        said = (f"with lr_rounding=exact it diverges at {name}, as it should (learning rates move from step {k0}, "
                f"beyond the tolerance from step {k1}).")
    if verdicts["float32"] == (None, True) and complete and exact_ok:
        print(f"\nThe official code agrees with byol-ref (preset deepmind) on every recorded tensor of {args.steps} "
              f"step(s); {said}")
        return 0
    want = ("float32: (None, True); exact: " + ("(None, True)" if k0 is None else
            f"a first divergence at step {k0} or later" + ("" if k1 is None else f", at step {k1} at the latest")))
    print(f"\nUnexpected (first divergence, every tensor compared): {verdicts}; want {want}. See the reports "
          "above.")
    return 1


if __name__ == "__main__":
    sys.exit(main())
