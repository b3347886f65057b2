"""Speed of the metrics' torch backend against scikit-learn, in the same run.

10,000 samples x 12 latents, 6 sources of Shapes3D's sizes (10, 10, 10, 8, 4, 15); latents that mix the
sources with noise (half of them informative), discrete (FSQ-quantized to 12 levels) and continuous.
Times `infomec` and `dci` three ways, with the scores of each, so that speed and agreement are read together:

- `torch`: `backend="torch"` on the chosen device;
- `sklearn`: `backend="sklearn"`, this package's scikit-learn backend (seeded; the paper's InfoE settings);
- `reference`: scikit-learn called exactly as the authors' evaluation code calls it (`reference_infomec`,
  `reference_dci` below: one `mutual_info_classif` call per (source, latent) pair, unseeded forests, the
  split's `random_state=42`), i.e. what a researcher running the reference code pays today.

    python benchmarks/metrics_speed.py                 # CPU -> benchmarks/results/metrics_speed_cpu.json
    python benchmarks/metrics_speed.py --device cuda   # GPU -> benchmarks/results/metrics_speed_cuda.json

The torch timing is the best of `--repeats` runs after one warm-up run (on CUDA, synchronized); sklearn's is
one run (it takes minutes). Wall time is the figure that counts; the CPU time of the process (all threads)
is recorded beside it because on a shared machine it is far less disturbed by other jobs, as is the load
average. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import sklearn
import torch
from sklearn import ensemble, feature_selection, linear_model, metrics, model_selection, preprocessing
from sklearn.exceptions import ConvergenceWarning

from tripod_pl.metrics import _common as common
from tripod_pl.metrics import dci, infomec

SIZES = (10, 10, 10, 8, 4, 15)
RESULTS = Path(__file__).resolve().parent / "results"


def make_data(n: int, n_latents: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sources (n x 6 ints), continuous latents and their FSQ-quantized version (n x n_latents)."""
    rng = np.random.default_rng(seed)
    sources = np.stack([rng.integers(0, k, n) for k in SIZES], axis=1)
    std = (sources - sources.mean(0)) / sources.std(0)
    k = len(SIZES)
    mix = np.eye(n_latents, k) + 0.2 * rng.standard_normal((n_latents, k))  # mostly one source per latent
    mix[k:] *= 0.1  # the latents beyond the sources carry little
    continuous = std @ mix.T + 0.3 * rng.standard_normal((n, n_latents))
    discrete = np.round((np.tanh(continuous / 2) + 1) * 5.5) / 5.5 - 1  # FSQ, 12 levels
    return sources, continuous, discrete


# ---- scikit-learn as the reference code calls it ----------------------------------------------------------
# The Tripod authors' evaluation (github.com/kylehkhsu/tripod, disentangle/metrics/infomec.py and dci.py; the
# InfoMEC file is the same in kylehkhsu/latent_quantization) transcribed call for call. Their
# LogisticRegression(penalty=None, tol=1e-4, class_weight="balanced", solver="lbfgs", max_iter=100,
# multi_class="multinomial", n_jobs=-1) is written for scikit-learn >= 1.8 as C=inf (what penalty=None means),
# no multi_class (lbfgs is multinomial; the argument is gone) and no n_jobs (ignored by lbfgs; deprecated).


def _reference_labels(x: np.ndarray) -> np.ndarray:
    return np.stack([preprocessing.LabelEncoder().fit_transform(col) for col in x.T], axis=1)


def _reference_log_loss(features, y: np.ndarray) -> float:
    model = linear_model.LogisticRegression(
        C=np.inf, tol=1e-4, fit_intercept=True, class_weight="balanced", solver="lbfgs", max_iter=100
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # the reference lets 100 iterations stop the fit
        model.fit(features, y)
    return float(metrics.log_loss(y, model.predict_proba(features)))


def reference_infomec(sources: np.ndarray, latents: np.ndarray, discrete: bool) -> dict[str, float]:
    """InfoM, InfoC, InfoE with scikit-learn used as the reference code uses it (unseeded kNN MI)."""
    s = _reference_labels(sources)
    k, n_z = s.shape[1], latents.shape[1]
    if discrete:
        z = _reference_labels(latents)
    else:  # each latent standardized on its own, then one kNN MI call per (source, latent) pair
        z = np.concatenate([preprocessing.StandardScaler().fit_transform(col[:, None]) for col in latents.T], 1)
    nmi = np.empty((k, n_z))
    for i in range(k):
        for j in range(n_z):
            if discrete:
                nmi[i, j] = metrics.mutual_info_score(s[:, i], z[:, j])
            else:
                nmi[i, j] = feature_selection.mutual_info_classif(
                    z[:, j][:, None], s[:, i], discrete_features=False, n_neighbors=10
                )[0]
        nmi[i] /= metrics.mutual_info_score(s[:, i], s[:, i])
    q25, q75 = np.quantile(latents, [0.25, 0.75], axis=0)
    active = common.active_latents(q75 - q25, discrete)
    infom, infoc = common.infom_infoc(nmi, active, np.ones(k, dtype=bool))
    features = (
        preprocessing.OneHotEncoder().fit_transform(latents)
        if discrete
        else preprocessing.StandardScaler().fit_transform(latents)
    )
    ratios = []
    for i in range(k):
        h_pred = _reference_log_loss(features, s[:, i])
        h_null = _reference_log_loss(np.zeros_like(latents), s[:, i])
        ratios.append((h_null - h_pred) / h_null)
    return {"infom": infom, "infoc": infoc, "infoe": float(np.mean(ratios))}


def reference_dci(sources: np.ndarray, latents: np.ndarray) -> dict[str, float]:
    """D, C, I with scikit-learn's forests as the reference code fits them (unseeded, every core)."""
    z = preprocessing.StandardScaler().fit_transform(latents)  # float latents are standardized
    importance = np.zeros((z.shape[1], sources.shape[1]))
    accuracy = np.zeros(sources.shape[1])
    for i in range(sources.shape[1]):
        model = ensemble.RandomForestClassifier(
            n_estimators=100, criterion="entropy", max_depth=10, min_samples_split=2, n_jobs=-1, verbose=0
        )
        y = preprocessing.LabelEncoder().fit_transform(sources[:, i])
        z_train, z_test, y_train, y_test = model_selection.train_test_split(z, y, test_size=0.1, random_state=42)
        model.fit(z_train, y_train)
        importance[:, i] = model.feature_importances_
        accuracy[i] = np.mean(model.predict(z_test) == y_test)
    return common.dci_scores(importance, accuracy, np.ones(sources.shape[1], dtype=bool))


# ---- timing ---------------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_torch(fn, device: torch.device, repeats: int) -> tuple[float, float, dict]:
    """Best wall time and the CPU time of that run (all threads), after one warm-up run."""
    out = fn()  # warm-up (allocator, kernels)
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        _sync(device)
        start, start_cpu = time.perf_counter(), time.process_time()
        out = fn()
        _sync(device)
        wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
        if wall < best:
            best, best_cpu = wall, cpu
    return best, best_cpu, out


def time_once(fn) -> tuple[float, float, dict]:
    start, start_cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - start, time.process_time() - start_cpu, out


def scores(out: dict) -> dict[str, float]:
    return {k: round(float(v), 4) for k, v in out.items() if k in ("infom", "infoc", "infoe", "d", "c", "i")}


#: what each figure of a row means (written into the JSON beside the rows)
COLUMNS = {
    "torch_s": "wall seconds of backend='torch' on the device (best of --repeats after a warm-up)",
    "sklearn_s": "wall seconds of backend='sklearn', this package's scikit-learn backend (one run)",
    "speedup": "sklearn_s / torch_s (the figure quoted before the reference column existed)",
    "reference_s": "wall seconds of scikit-learn called as the authors' evaluation code calls it (one run)",
    "speedup_vs_reference": "reference_s / torch_s",
    "*_cpu_s": "CPU seconds of the process, all threads (less disturbed by other jobs than wall time)",
    "*_scores": "the scores each computed, to read speed and agreement together",
}
BASELINES = ("sklearn", "reference")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="torch device for the torch backend (cpu, cuda)")
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--latents", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=2, help="timed torch runs after the warm-up")
    parser.add_argument(
        "--baselines", nargs="*", choices=BASELINES, default=list(BASELINES), help="scikit-learn runs to time"
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default by device)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)

    sources, continuous, discrete = make_data(args.samples, args.latents)
    load_before = list(os.getloadavg())
    rows = []
    for kind, latents in (("discrete", discrete), ("continuous", continuous)):
        is_discrete = kind == "discrete"
        s_dev = torch.as_tensor(sources, device=device)
        z_dev = torch.as_tensor(latents, dtype=torch.float32, device=device)
        cases = {
            "infomec": (
                lambda s=s_dev, z=z_dev, d=is_discrete: infomec(s, z, d),
                {
                    "sklearn": lambda z=latents, d=is_discrete: infomec(sources, z, d, backend="sklearn"),
                    "reference": lambda z=latents, d=is_discrete: reference_infomec(sources, z, d),
                },
            ),
            "dci": (
                lambda s=s_dev, z=z_dev: dci(s, z),
                {
                    "sklearn": lambda z=latents: dci(sources, z, backend="sklearn"),
                    "reference": lambda z=latents: reference_dci(sources, z),
                },
            ),
        }
        for metric, (torch_fn, baselines) in cases.items():
            t_torch, cpu_torch, out_torch = time_torch(torch_fn, device, args.repeats)
            row = {"metric": metric, "latents": kind, "torch_s": round(t_torch, 3)}
            row_cpu = {"torch_cpu_s": round(cpu_torch, 3)}
            row_scores = {"torch_scores": scores(out_torch)}
            for name in args.baselines:
                t, cpu, out = time_once(baselines[name])
                row[f"{name}_s"] = round(t, 3)
                row["speedup" if name == "sklearn" else f"speedup_vs_{name}"] = round(t / t_torch, 2)
                row_cpu[f"{name}_cpu_s"] = round(cpu, 3)
                row_scores[f"{name}_scores"] = scores(out)
            row.update(row_cpu)
            row.update(row_scores)
            rows.append(row)
            print(json.dumps(row), flush=True)

    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "samples": args.samples,
        "latents": args.latents,
        "sources": list(SIZES),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_before": load_before,
        "load_average_after": list(os.getloadavg()),
        "torch": torch.__version__,
        "sklearn": sklearn.__version__,
        "columns": COLUMNS,
        "rows": rows,
    }
    out = args.out or RESULTS / f"metrics_speed_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, out)
    print(markdown_table(result))
    print(f"written to {out}")
    return result


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo) or what the platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def markdown_table(result: dict) -> str:
    rows = result["rows"]
    names = [b for b in BASELINES if rows and f"{b}_s" in rows[0]]
    lines = [
        f"{result['samples']} samples x {result['latents']} latents, {len(result['sources'])} sources; "
        f"torch on {result['device']} ({result['device_name']}), scikit-learn on {result['cpu_count']} CPU cores",
        "",
        "| metric | latents | torch (s) | "
        + "".join(f"{b} (s) | speed-up vs {b} | " for b in names)
        + "CPU time "
        + " / ".join(["torch", *names])
        + " (s) | "
        + " | ".join(f"{n} scores" for n in ["torch", *names])
        + " |",
        "|---|---|---:|" + "---:|---:|" * len(names) + "---:|" + "---|" * (1 + len(names)),
    ]
    for r in rows:
        fmt = lambda d: " ".join(f"{k}={v:.3f}" for k, v in d.items())  # noqa: E731
        speed = lambda b, r=r: r["speedup"] if b == "sklearn" else r[f"speedup_vs_{b}"]  # noqa: E731
        lines.append(
            f"| {r['metric']} | {r['latents']} | {r['torch_s']:.2f} | "
            + "".join(f"{r[f'{b}_s']:.2f} | {speed(b):.1f}x | " for b in names)
            + " / ".join(f"{r[f'{n}_cpu_s']:.1f}" for n in ["torch", *names])
            + " | "
            + " | ".join(fmt(r[f"{n}_scores"]) for n in ["torch", *names])
            + " |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
