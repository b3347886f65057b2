"""Write ``configs/<dataset>/<method>.yaml`` for every method (docs/architecture.md, "Configs") and every benchmark.

The YAML files are committed; this script is their single source, and ``tests/integration/test_configs.py`` checks that
they are up to date. Run ``python scripts/make_configs.py`` after editing the tables below.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from tripod_pl.legs.registry import build_leg

ROOT = Path(__file__).resolve().parents[1] / "configs"

#: (lambda_KLM, lambda_NHP), beta of beta-TCVAE, QLAE weight decay, PSNR threshold for model selection (dB).
#: klm, nhp: tripod configs/train_autoencoder.yaml (sweeper params for shapes3d; "good hyperparameters for other
#: datasets" comment for the rest). beta: lq configs/params/tcvae/{shapes3d,mpi3d,falcor3d,tcvae_isaac3d}.yaml
#: `total_correlation`. qlae_wd: lq configs/params/quantized_ae/<dataset>.yaml `model_partial.lambdas.l2` (AdamW
#: weight decay, disentangle/models/ae.py). psnr: the Tripod paper's model-selection thresholds
#: (docs/evaluation.md, "Model selection"), on the scale of the reference's uint8 PSNR (tripod
#: disentangle/metrics/image.py), hence BestInfoMCheckpoint's psnr_metric "psnr_paper".
DATASETS = {
    "shapes3d": {"klm": 1e-4, "nhp": 1e-2, "beta": 3.0, "qlae_wd": 0.1, "psnr": 38.0},
    "mpi3d": {"klm": 1e-8, "nhp": 1e-4, "beta": 0.3, "qlae_wd": 0.001, "psnr": 42.0},
    "falcor3d": {"klm": 1e-10, "nhp": 1e-2, "beta": 3.0, "qlae_wd": 0.1, "psnr": 34.0},
    "isaac3d": {"klm": 1e-4, "nhp": 1e-8, "beta": 1.0, "qlae_wd": 0.1, "psnr": 40.0},
}

FINE_N_Q = 256  # "finer quantization" ablation: a grid much finer than Tripod's 12 levels

#: The other VAE baselines (docs/legs.md), the same weights on every dataset: NOT tuned here (no per-dataset search
#: was run for them), usual values from their papers and from the grid of Locatello et al. 2019 ("Challenging
#: Common Assumptions in the Unsupervised Learning of Disentangled Representations", disentanglement_lib). Every
#: KL/penalty term is divided by the number of pixel values, so these weights mean what they mean against a
#: reconstruction summed over pixels, as in those papers.
#: betavae: beta 4 (Higgins et al. 2017 on dSprites; Locatello's grid 1-16). dipvae1: lambda_od 10 and
#: lambda_d = 10 lambda_od (Locatello's rule for DIP-VAE-I and grid 1-50). dipvae2: lambda_od =
#: lambda_d = 10 (Locatello's DIP-VAE-II rule). factorvae: gamma 30 (the middle of Locatello's grid 10-100), the
#: paper's discriminator (6 layers of 1000, Adam lr 1e-4, betas 0.5, 0.9). infovae: InfoVAE's objective
#: rec + (1 - alpha) KL + (alpha + lambda - 1) MMD with alpha 0, lambda 1000 (our choice: on the procedural config
#: the weighted MMD term was 7x the KL at step 25 and about equal to it at steps 50-75), inverse multiquadric kernel
#: with C = 2 n_z.
BASELINES = {
    "betavae": {"beta": 4.0},
    "dipvae1": {"lambda_od": 10.0, "lambda_d": 100.0},
    "dipvae2": {"lambda_od": 10.0, "lambda_d": 10.0},
    "infovae": {"alpha": 0.0, "lambda": 1000.0},
    "factorvae": {"gamma": 30.0},
}

#: The training protocol shared by every dataset config, with where each value comes from. "tripod" is
#: github.com/kylehkhsu/tripod, "lq" github.com/kylehkhsu/latent_quantization (docs/reference.md).
PROTOCOL = {
    # tripod configs/train_autoencoder.yaml and configs/train_tcvae.yaml, `optim.num_steps: 250000`
    "max_steps": 250_000,
    # tripod configs/train_*.yaml, `optim.learning_rate: 0.0002`; AdamW in disentangle/models/autoencoder.py
    # and tcvae.py `construct_optimizer`
    "lr": 2.0e-4,
    # tripod configs/train_*.yaml, `data.batch_size: 64`
    "batch_size": 64,
    # tripod configs/train_*.yaml `optim.clip: 1.`, applied as `optax.clip(1.)` (element-wise clamp to [-1, 1],
    # not a norm) before AdamW in disentangle/models/autoencoder.py and tcvae.py `construct_optimizer`, on every
    # parameter. lq clips the same way (configs/train_ae.yaml `optim.clip: 1.`, disentangle/models/ae.py) but
    # only its decayed group, not biases or the codebook; here QLAE clips every parameter (docs/reference.md).
    "gradient_clip_val": 1.0,
    "gradient_clip_algorithm": "value",
    # tripod configs/train_*.yaml `checkpoint.period: 1e4` (scripts/train_*.py save every 10k updates); the
    # checkpointed evaluations are the reference's only model-selection candidates, hence validation (the
    # selection's PSNR) and BestInfoMCheckpoint(every_n_steps) on the same period
    "checkpoint_every": 10_000,
    # tripod scripts/train_*.py `main`: evaluate at loop step 0, when (step + 1) % eval.period == 0, and when
    # (step + 1) % (eval.period // 5) == 0 below eval.period (configs/train_*.yaml `eval.period: 1e4`): the
    # start, every 2k until 10k, then every 10k. (Its step + 1 updates are our global_step: the reference
    # evaluates one update earlier, after 1,999, 3,999, ... updates; docs/reference.md.)
    # The diagnostics of the same `evaluate` (tripod scripts/train_autoencoder.py and train_tcvae.py, every model
    # they train): exact decoder Hessians w.r.t. the latents at `eval.num_derivatives: 100` samples, per layer the
    # diagonal / off-diagonal statistics of |H| and |H * s s^T| (`process_layer_hessian`), and the pairwise 2-D
    # latent histograms (`pairwise_latents`). On for every method here, QLAE included, so all are comparable.
    # (The procedural configs and the quickstart keep them off: CPU-sized.)
    "evaluation": {
        "every_n_steps": 10_000,
        "dense_every_n_steps": 2_000,
        "dense_until": 10_000,
        "at_start": True,
        "hessian_samples": 100,
        "pairwise_histograms": True,
    },
}


#: The procedural dataset at CPU size (one Tripod run within about 20 minutes on a 2-core machine): the
#: quickstart's small networks and lr 1e-3, batch 32, 3,000 steps, evaluated every 500. The legs' weights are
#: Shapes3D's (not tuned here). Selection threshold 23 dB on the float PSNR: measured on the quickstart Tripod,
#: 19 dB (400 steps) reconstructs the background only, 23-24 dB (1,600-5,600 steps) shows each object as a blob
#: of the right colour, place and size (docs/evaluation.md, "Procedural dataset"); measured on the evaluation
#: subset, so the selection reads the evaluation's PSNR (psnr_stage "eval").
PROCEDURAL = {
    "sized_for": "a 2-core CPU (about 20 minutes a run)",
    "all": "make results",
    "hyper": {"klm": 1e-4, "nhp": 1e-2, "beta": 3.0, "qlae_wd": 0.1, "psnr": 23.0},
    "max_steps": 3_000,
    "every": 500,
    "model": {"encoder_widths": [8, 16, 32, 64], "decoder_widths": [64, 32, 16, 8], "cond_dim": 64, "lr": 1.0e-3},
    # float32 second differences are rounding noise at this size (benchmarks/results/nhp_numerics_cpu.json), so
    # exact second directional derivatives (method "jvp", float32); on the conditioning activation only, to keep a
    # run within the CPU budget (a training step costs about the same as with float64 differences there)
    "nhp": {"activations": ["cond"], "method": "jvp"},
    "data": {
        "path": "data/procedural.h5",
        "batch_size": 32,
        "num_workers": 1,
        "generate_if_missing": True,
        "eval_size": 2000,
    },
}
#: Every regularizer weight of the procedural configs (not FactorVAE's discriminator, which trains itself) is warmed
#: up linearly from 0 over the first steps. Measured (results/procedural_tuning.md): with the weights on from
#: step 0, Tripod sits at the background-only plateau (19.5 dB) until 1,000 steps on seed 0 and past 2,000 steps on
#: seed 1 (21 dB and 1/7 sources at 3,000), while the same networks without regularizers leave it by 1,000; warmed
#: up over 1,000 steps, both seeds end above 24 dB (4/7 and 3/7 sources).
PROCEDURAL_WARMUP = 1_000
#: The procedural sweep sized for one GPU that runs 12 of its 24 runs at a time (sweeps/procedural_gpu.yaml, the
#: "sweep" stage of benchmarks/gpu_check.sh). On the CPU the runs stop at 4 of 7 sources: 10,000 steps level off
#: at 25.3-25.8 dB, about what background, object colour, position and scale allow; a cosine-decayed learning rate
#: reaches 26.1 dB in 10,000 steps, still 4/7; twice the widths leave the background-only plateau about 1,500 steps
#: later and end behind (10,000 steps with decay: 25.9 dB, 3/7; results/procedural_tuning.md). So this profile
#: spends the GPU on steps, not width: the CPU configs' networks, legs, weights and batch (32: about 10 GFLOP a step,
#: forward and backward, 4.8 PFLOP for the 24 runs), 20,000 steps with cosine decay; what it reaches is for a GPU
#: session to measure.
PROCEDURAL_GPU = {
    **PROCEDURAL,
    "sized_for": "one GPU that trains many runs of its sweep at once",
    "all": "benchmarks/gpu_check.sh sweep",
    "max_steps": 20_000,
    "every": 2_000,
    "model": {**PROCEDURAL["model"], "lr_schedule": "cosine"},
}
#: weighted terms that train a leg's own parts, not the model: never warmed up
NOT_WARMED = {"discriminator"}


def warmup(model: dict, steps: int) -> dict:
    """``weight_schedules`` warming up every weighted term of the model's regularizers (the names in each leg's own
    ``weights``) over ``steps`` steps."""
    terms = [t for reg in model["regularizers"] for t in build_leg(reg).weights if t not in NOT_WARMED]
    ramp = {"class_path": "tripod_pl.legs.schedules.LinearWarmup"}
    return {"weight_schedules": {t: {**ramp, "init_args": {"steps": steps}} for t in terms}} if terms else {}


#: The quickstart is procedural Tripod cut to 2,500 steps. Not shorter: a run stopped at 2,250 steps read 22.9 dB,
#: below the 23 dB at which the objects show. Validation and checkpoints every 500 steps, evaluations every 1,000
#: and at the end (1,000, 2,000, 2,500): the run sits on the background-only plateau until about 1,500 steps, and
#: each evaluation costs about 15 s of a budget of 10 minutes (from a fresh clone, dataset included: 9.8 minutes
#: with these three; with five, every 500 steps, 10.2 and 10.5 minutes in a slow stretch).
QUICKSTART_STEPS, QUICKSTART_EVERY, QUICKSTART_EVAL_EVERY = 2_500, 500, 1_000


def leg(name: str, **init_args) -> dict:
    return {"class_path": f"tripod_pl.legs.{name}", "init_args": init_args}


def methods(h: dict, nhp_args: dict | None = None, nhp_only: dict | None = None) -> dict[str, tuple[str, dict]]:
    """method -> (description, model section); ``nhp_args`` are extra NHP and Hessian penalty arguments,
    ``nhp_only`` extra NHP arguments."""
    # diagnostics: per-activation NHP and Hessian penalty every step, as tripod disentangle/models/autoencoder.py
    # `batched_loss` logs `hessian_penalty/<layer>` and `hessian_penalty_normalized/<layer>`
    extra = nhp_args or {}
    klm = leg("KLM", weight=h["klm"])
    nhp = leg("NHP", weight=h["nhp"], **{**extra, **(nhp_only or {})}, diagnostics=True)
    return {
        "tripod": ("Tripod: FSQ + KLM + NHP", {"bottleneck": leg("FSQ", n_q=12), "regularizers": [klm, nhp]}),
        "tripod_no_klm": ("Tripod w/o KLM (ablation)", {"bottleneck": leg("FSQ", n_q=12), "regularizers": [nhp]}),
        "tripod_no_nhp": ("Tripod w/o NHP (ablation)", {"bottleneck": leg("FSQ", n_q=12), "regularizers": [klm]}),
        "tripod_finer": (
            f"Tripod w/ finer quantization (ablation): FSQ with n_q={FINE_N_Q}",
            {"bottleneck": leg("FSQ", n_q=FINE_N_Q), "regularizers": [klm, nhp]},
        ),
        "tripod_naive": (
            "Naive Tripod: QLAE codebook + KLM with fixed bandwidths + Hessian penalty with activation norm",
            {
                "bottleneck": leg("ScalarCodebook", n_v=10),
                "regularizers": [
                    leg("KLM", weight=h["klm"], fixed_std=0.1),
                    leg("HessianPenalty", weight=h["nhp"], **extra, diagnostics=True),
                ],
                "activation_norm": True,
            },
        ),
        "qlae": (
            "QLAE: scalar codebook quantization + weight decay",
            {"bottleneck": leg("ScalarCodebook", n_v=10), "regularizers": [], "weight_decay": h["qlae_wd"]},
        ),
        "betatcvae": (
            "beta-TCVAE: Gaussian posterior + beta-TC decomposition",
            {"bottleneck": leg("GaussianBottleneck"), "regularizers": [leg("BetaTC", beta=h["beta"])]},
        ),
        "ae": ("Plain autoencoder", {"bottleneck": leg("IdentityBottleneck"), "regularizers": []}),
        **baselines(),
    }


def baselines() -> dict[str, tuple[str, dict]]:
    """The other VAE baselines (BASELINES; the same on every dataset, not tuned here)."""
    b, gauss = BASELINES, leg("GaussianBottleneck")
    info = b["infovae"]
    return {
        "betavae": (
            f"beta-VAE (beta {b['betavae']['beta']:g}; not tuned here): Gaussian posterior + beta KL",
            {"bottleneck": gauss, "regularizers": [leg("KL", beta=b["betavae"]["beta"])]},
        ),
        "dipvae1": (
            "DIP-VAE-I (not tuned here): ELBO + covariance penalties on the means",
            {"bottleneck": gauss, "regularizers": [leg("KL"), leg("DIPVAE", kind="i", **b["dipvae1"])]},
        ),
        "dipvae2": (
            "DIP-VAE-II (not tuned here): ELBO + covariance penalties on the aggregate posterior",
            {"bottleneck": gauss, "regularizers": [leg("KL"), leg("DIPVAE", kind="ii", **b["dipvae2"])]},
        ),
        "infovae": (
            f"InfoVAE (alpha {info['alpha']:g}, lambda {info['lambda']:g}; not tuned here): (1 - alpha) KL + "
            "(alpha + lambda - 1) MMD",
            {
                "bottleneck": gauss,
                "regularizers": [
                    leg("KL", beta=1.0 - info["alpha"]),
                    leg("MMD", weight=info["alpha"] + info["lambda"] - 1.0, kernel="imq"),
                ],
            },
        ),
        "factorvae": (
            f"FactorVAE (gamma {b['factorvae']['gamma']:g}; not tuned here): ELBO + gamma TC by a discriminator",
            {"bottleneck": gauss, "regularizers": [leg("KL"), leg("FactorTC", gamma=b["factorvae"]["gamma"])]},
        ),
    }


def trainer(
    root: str,
    max_steps: int,
    every: int,
    psnr: float,
    evaluation: dict | None = None,
    psnr_metric: str = "psnr_paper",
    psnr_stage: str = "val",
) -> dict:
    """The Trainer section: checkpoints and validation every ``every`` steps, evaluations on ``evaluation``
    (EvaluationCallback's schedule arguments; default every ``every`` steps), model selection among the
    evaluations at multiples of ``every`` when evaluations follow a schedule of their own (else all of them)."""
    return {
        "max_steps": max_steps,
        "gradient_clip_val": PROTOCOL["gradient_clip_val"],
        "gradient_clip_algorithm": PROTOCOL["gradient_clip_algorithm"],
        "val_check_interval": every,
        "check_val_every_n_epoch": None,
        "limit_val_batches": 20,
        "log_every_n_steps": 50,
        "default_root_dir": root,
        "callbacks": [
            {
                "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                "init_args": {"save_last": True, "every_n_train_steps": every, "save_top_k": -1},
            },
            {
                "class_path": "tripod_pl.callbacks.EvaluationCallback",
                "init_args": evaluation or {"every_n_steps": every},
            },
            {
                "class_path": "tripod_pl.callbacks.BestInfoMCheckpoint",
                "init_args": {"psnr_threshold": psnr, "psnr_metric": psnr_metric}
                | ({"psnr_stage": psnr_stage} if psnr_stage != "val" else {})
                | ({"every_n_steps": every} if evaluation else {}),
            },
        ],
    }


def procedural_configs(folder: str, pro: dict) -> dict[Path, str]:
    """``configs/<folder>/<method>.yaml`` for every method on the procedural dataset, sized by the profile ``pro``
    (``PROCEDURAL`` or ``PROCEDURAL_GPU``)."""
    out = {}
    every, lr = pro["every"], pro["model"]["lr"]
    schedule = f"lr {lr:g}, cosine decay" if pro["model"].get("lr_schedule") == "cosine" else f"lr {lr:g}"
    for method, (description, model) in methods(pro["hyper"], pro["nhp"]).items():
        config = {
            "seed_everything": 0,
            "trainer": {
                **trainer(
                    f"runs/{folder}/{method}",
                    max_steps=pro["max_steps"],
                    every=every,
                    psnr=pro["hyper"]["psnr"],
                    psnr_metric="psnr",
                    # the evaluation subset's PSNR (2,000 images), on which the 23 dB threshold was measured; the
                    # validation PSNR here (4 batches) reads about 2 dB lower (22.6 vs 24.8 dB for Tripod at 3,000)
                    psnr_stage="eval",
                ),
                "limit_val_batches": 4,
                "log_every_n_steps": 10,
            },
            "model": {**model, **pro["model"], **warmup(model, PROCEDURAL_WARMUP)},
            "data": dict(pro["data"]),
        }
        m = pro["model"]
        comment = (
            f"{description} on the built-in procedural dataset, sized for {pro['sized_for']}:\n"
            f"encoder {'-'.join(map(str, m['encoder_widths']))}, decoder {'-'.join(map(str, m['decoder_widths']))}, "
            f"{schedule}, batch {pro['data']['batch_size']}, {pro['max_steps']:,} steps;\n"
            "NHP on the conditioning activation, exact (jvp);\n"
            f"regularizer weights warmed up linearly over the first {PROCEDURAL_WARMUP:,} steps.\n"
            "Selection: best InfoM among evaluations with PSNR > 23 dB (the float PSNR at which objects show).\n"
            f"Train: tripod-train fit --config configs/{folder}/{method}.yaml (all: {pro['all']})\n"
            "Generated by scripts/make_configs.py; edit that file, not this one."
        )
        out[ROOT / folder / f"{method}.yaml"] = render(comment, config)
    return out


def render(comment: str, config: dict) -> str:
    head = "".join(f"# {line}\n" for line in comment.splitlines())
    return head + yaml.safe_dump(config, sort_keys=False, default_flow_style=None, width=110)


def all_configs() -> dict[Path, str]:
    out = {}
    for dataset, h in DATASETS.items():
        # NHP by exact second derivatives (method "jvp"), not the reference's float32 differences: at the paper's
        # size those are 5% off in gradient at initialisation, but in training the latents' smallest batch std
        # falls below 1e-3 within 5 steps and by step 30 their NHP gradient is 1.5e4 times the true one's size
        # (benchmarks/results/nhp_train_log_cpu_paper.json; docs/legs.md, "Second derivatives"). The naive Hessian
        # penalty keeps differences: its perturbation (0.1) is not scaled by the stds.
        for method, (description, model) in methods(h, nhp_only={"method": "jvp"}).items():
            config = {
                "seed_everything": 0,
                "trainer": trainer(
                    f"runs/{dataset}/{method}",
                    max_steps=PROTOCOL["max_steps"],
                    every=PROTOCOL["checkpoint_every"],
                    psnr=h["psnr"],
                    evaluation=PROTOCOL["evaluation"],
                ),
                "model": {**model, "lr": PROTOCOL["lr"]},
                "data": {"path": f"data/{dataset}.h5", "batch_size": PROTOCOL["batch_size"], "num_workers": 2},
            }
            comment = (
                f"{description} on {dataset} (docs/architecture.md, paper protocol: batch 64, 250k steps).\n"
                f"Model selection: best InfoM among checkpoints with validation PSNR > {h['psnr']} dB (the paper's\n"
                "uint8 PSNR, psnr_paper, on whose scale the threshold was set; docs/evaluation.md).\n"
                f"Convert the dataset first: tripod-data convert {dataset} SRC data/{dataset}.h5\n"
                f"Train: tripod-train fit --config configs/{dataset}/{method}.yaml\n"
                "Generated by scripts/make_configs.py; edit that file, not this one."
            )
            out[ROOT / dataset / f"{method}.yaml"] = render(comment, config)
    out.update(procedural_configs("procedural", PROCEDURAL))
    out.update(procedural_configs("procedural_gpu", PROCEDURAL_GPU))
    quick = yaml.safe_load(out[ROOT / "procedural" / "tripod.yaml"])
    quick["trainer"].update(max_steps=QUICKSTART_STEPS, val_check_interval=QUICKSTART_EVERY,
                            default_root_dir="runs/quickstart")  # fmt: skip
    for callback in quick["trainer"]["callbacks"]:
        if "every_n_train_steps" in callback["init_args"]:
            callback["init_args"]["every_n_train_steps"] = QUICKSTART_EVERY
        if callback["class_path"].endswith("EvaluationCallback"):
            # the reference's diagnostics as TensorBoard panels, at a few Hessians of the hidden
            # activations (those of the 12,288 logits took 1.8 s of every evaluation's 2)
            callback["init_args"].update(
                every_n_steps=QUICKSTART_EVAL_EVERY,
                hessian_samples=4,
                hessian_activations=["cond", "block0", "block1", "block2"],
                pairwise_histograms=True,
            )
    comment = (
        "Quickstart: configs/procedural/tripod.yaml cut to 2,500 steps (about 10 minutes on an idle 2-core CPU),\n"
        "on the built-in procedural dataset (made on first use). At this size and budget Tripod reconstructs the\n"
        "background, the objects' colour and place; the console lists the sources captured at each evaluation\n"
        "(at 1,000, 2,000 and 2,500 steps).\n"
        "make train  (or: tripod-train fit --config configs/quickstart.yaml)\n"
        "Watch it: tensorboard --logdir runs/quickstart\n"
        "Generated by scripts/make_configs.py; edit that file, not this one."
    )
    out[ROOT / "quickstart.yaml"] = render(comment, quick)
    return out


def main(check: bool = False) -> int:
    stale = []
    for path, text in all_configs().items():
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print("out of date (run python scripts/make_configs.py):", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(check="--check" in sys.argv))
