"""Training with any Lightning logger: scalars always, figures where the logger takes images, no crash otherwise.

Each test is a two-step fit of a tiny Tripod with one evaluation (step 2), figures and a traversal animation on.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tripod_pl.callbacks import EvaluationCallback
from tripod_pl.callbacks.loggers import FigureWriter, logger_kind

from ..helpers import tiny_data, tiny_model, tiny_trainer

FIGURES = ("eval/nmi", "eval/reconstructions", "eval/traversals", "eval/latent_histograms")
FRAMES, SAMPLES = 4, 2


def fit(tmp_path: Path, tiny_h5: str, loggers: list) -> EvaluationCallback:
    callback = EvaluationCallback(
        every_n_steps=2, dci=False, traversal_steps=3, num_traversal_samples=SAMPLES, num_reconstructions=2,
        animation_frames=FRAMES, evaluate_at_end=False,
    )  # fmt: skip
    trainer = tiny_trainer(tmp_path, [callback], logger=loggers, max_steps=2, log_every_n_steps=1)
    trainer.fit(tiny_model(), datamodule=tiny_data(tiny_h5, eval_size=100))
    assert callback.evaluated_steps == [2]
    return callback


def animation_shape(callback: EvaluationCallback) -> tuple[int, int]:
    """(height, width) of the animation's frames: a header, a row per sample, a column per animated latent."""
    d = int(callback.last_evaluation.active.sum()) or 4  # all 4 latents when none is active
    return 26 + SAMPLES * 66 + 2, d * 66 + 2


def gif_frames(data: bytes) -> list[np.ndarray]:
    gif = Image.open(io.BytesIO(data))
    frames = []
    for k in range(gif.n_frames):
        gif.seek(k)
        frames.append(np.asarray(gif.convert("RGB")))
    return frames


def test_tensorboard_and_csv_loggers_together_get_the_scalars_and_the_same_figures(tmp_path, tiny_h5, capsys):
    tb, csv_logger = TensorBoardLogger(tmp_path, name="tb"), CSVLogger(tmp_path, name="csv")
    callback = fit(tmp_path, tiny_h5, [tb, csv_logger])
    infom = callback.last_evaluation.scalars["infom"]

    rows = list(csv.DictReader(open(Path(csv_logger.log_dir) / "metrics.csv")))
    logged = [(int(r["step"]), float(r["eval/infom"])) for r in rows if r.get("eval/infom")]
    assert logged == [(2, pytest.approx(infom))]
    folder = Path(csv_logger.log_dir) / "figures"
    assert capsys.readouterr().out.count(f"CSVLogger takes no images: figures are saved under {folder}") == 1

    events = EventAccumulator(tb.log_dir, size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    assert [e.value for e in events.Scalars("eval/infom")] == [pytest.approx(infom)]
    for tag in FIGURES:
        png = folder / tag / "step_0000002.png"
        (shown,) = events.Images(tag)
        # one rendering, the same pixels in both places
        assert np.array_equal(
            np.asarray(Image.open(png)), np.asarray(Image.open(io.BytesIO(shown.encoded_image_string)))
        )
    assert {f"eval/latents/z{j}" for j in range(4)} <= set(events.Tags()["histograms"])

    (video,) = events.Images("eval/traversal_animation")
    gif = video.encoded_image_string
    assert gif[:6] == b"GIF89a" and (video.height, video.width) == animation_shape(callback)
    assert gif == (folder / "eval" / "traversal_animation" / "step_0000002.gif").read_bytes()
    frames = gif_frames(gif)
    assert frames[0].shape[:2] == animation_shape(callback) and 2 <= len(frames) <= FRAMES
    assert any(not np.array_equal(frames[0], f) for f in frames[1:])  # the latents move


@pytest.mark.slow  # W&B starts a service process: about 10 s
def test_wandb_offline_gets_the_scalars_figures_histograms_and_animation(tmp_path, tiny_h5, monkeypatch):
    wandb = pytest.importorskip("wandb")
    from lightning.pytorch.loggers import WandbLogger

    for name, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(name, value)
    logger = WandbLogger(save_dir=str(tmp_path), project="tripod-pl-test", offline=True)
    try:
        callback = fit(tmp_path, tiny_h5, [logger])
        run = logger.experiment
        assert run.summary["eval/infom"] == pytest.approx(callback.last_evaluation.scalars["infom"])
        assert run.summary["eval/latents/z0"]["_type"] == "histogram"
        media = Path(run.dir) / "media"
    finally:
        wandb.finish()
    for tag in FIGURES:
        (png,) = (media / "images").glob(f"{tag}_*.png")
        assert Image.open(png).size[0] > 50
    (gif,) = (media / "videos").glob("eval/traversal_animation_*.gif")
    frames = gif_frames(gif.read_bytes())
    assert frames[0].shape[:2] == animation_shape(callback)


class ScalarsOnly(Logger):
    """A logger that takes scalars only (as a third-party logger tripod_pl knows nothing of)."""

    def __init__(self) -> None:
        super().__init__()
        self.metrics: list[tuple[int | None, dict]] = []

    @property
    def name(self) -> str:
        return "scalars-only"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        self.metrics.append((step, dict(metrics)))


def test_a_logger_without_images_gets_the_scalars_and_one_warning(tmp_path, tiny_h5):
    logger = ScalarsOnly()
    with pytest.warns(UserWarning, match="ScalarsOnly is not a logger tripod_pl sends figures to"):
        callback = fit(tmp_path, tiny_h5, [logger])
    (logged,) = [(step, m) for step, m in logger.metrics if "eval/infom" in m]
    scalars = callback.last_evaluation.scalars
    assert logged[0] == 2 and all(logged[1][f"eval/{k}"] == pytest.approx(v) for k, v in scalars.items())


class MLFlowLogger:
    """Stands in for Lightning's MLFlowLogger (recognised by class name): records the client's calls."""

    run_id = "run-1"

    def __init__(self, new_api: bool = True) -> None:
        self.calls: list[tuple] = []
        self.new_api = new_api
        self.experiment = self

    def log_image(self, run_id, image, artifact_file=None, key=None, step=None):
        if not self.new_api and key is not None:
            raise TypeError("log_image() got an unexpected keyword argument 'key'")
        self.calls.append(("image", run_id, image.shape, artifact_file, key, step))

    def log_artifact(self, run_id, local_path, artifact_path=None):
        self.calls.append(("artifact", run_id, Path(local_path).read_bytes()[:6], Path(local_path).name, artifact_path))


@pytest.mark.parametrize("new_api", [True, False])
def test_mlflow_gets_images_with_their_step_and_the_animation_as_an_artifact(new_api):
    logger = MLFlowLogger(new_api)
    assert logger_kind(logger) == "mlflow"
    writer = FigureWriter([logger])
    image = np.zeros((5, 7, 3), dtype=np.uint8)
    writer.add_image("eval/nmi", image, 40)
    writer.add_histogram("eval/latents/z0", np.arange(5.0), 40)  # MLflow has no histograms: nothing
    writer.add_video("eval/traversal_animation", np.zeros((3, 4, 6, 3), dtype=np.uint8), 40)
    first = ("image", "run-1", (5, 7, 3), None, "eval/nmi", 40) if new_api else (
        "image", "run-1", (5, 7, 3), "eval/nmi/step_0000040.png", None, None
    )  # fmt: skip
    assert logger.calls == [first, ("artifact", "run-1", b"GIF89a", "step_0000040.gif", "eval/traversal_animation")]


def test_a_real_mlflow_logger_stores_the_images_and_the_animation(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")  # not a dependency: pip install mlflow (or mlflow-skinny)
    from lightning.pytorch.loggers import MLFlowLogger
    from matplotlib.figure import Figure

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 wants a database; a folder is enough here
    logger = MLFlowLogger(experiment_name="tripod-pl-test", tracking_uri=f"file:{tmp_path / 'mlruns'}")
    writer = FigureWriter([logger])
    fig = Figure(figsize=(2, 1))
    fig.add_subplot().plot([0, 1])
    writer.add_figure("eval/nmi", fig, 40)
    writer.add_video("eval/traversal_animation", np.zeros((3, 4, 6, 3), dtype=np.uint8), 40)
    logger.finalize("success")
    artifacts = tmp_path / "mlruns" / logger.experiment_id / logger.run_id / "artifacts"
    (png,) = (artifacts / "images").glob("eval*nmi*step*40*[0-9a-f].png")
    assert Image.open(png).size == (200, 100)
    assert (artifacts / "eval" / "traversal_animation" / "step_0000040.gif").read_bytes()[:6] == b"GIF89a"
