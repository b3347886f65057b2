"""The evaluation report: where it goes and what its Markdown table says."""

from __future__ import annotations

import json
import os

from tripod_pl.cli.report import markdown_report, report_paths, write_report


def test_reports_go_to_out_dir_or_next_to_the_checkpoint_under_its_name(tmp_path):
    assert report_paths("/runs/a/best.ckpt") == (
        report_paths("/runs/a/best.ckpt")[0].with_name("best.metrics.json"),
        report_paths("/runs/a/best.ckpt")[0].with_name("best.metrics.md"),
    )
    assert str(report_paths("/runs/a/best.ckpt")[0]) == "/runs/a/best.metrics.json"
    assert [p.name for p in report_paths("/runs/a/best.ckpt", tmp_path)] == ["metrics.json", "metrics.md"]


def test_written_reports_are_readable_by_everyone_and_leave_no_temporary_files(tmp_path):
    metrics = {
        "infom": 0.5, "infoc": 0.25, "infoe": 0.75, "num_active": 1, "n_z": 2, "psnr": 20.0,
        "num_samples": 10, "data": "d.h5", "discrete": True,
    }  # fmt: skip
    json_path, md_path = report_paths("x.ckpt", tmp_path / "out")
    write_report(metrics, json_path, md_path)
    assert json.loads(json_path.read_text()) == metrics
    assert md_path.read_text() == markdown_report(metrics)
    assert sorted(os.listdir(tmp_path / "out")) == ["metrics.json", "metrics.md"]
    assert all(p.stat().st_mode & 0o044 == 0o044 for p in (json_path, md_path))  # not 0600 like mkstemp's


def test_markdown_report_of_a_collapsed_model_has_no_best_latents():
    metrics = {
        "checkpoint": "/x/last.ckpt", "global_step": 7, "infom": 0.0, "infoc": 0.0, "infoe": 0.0, "num_active": 0,
        "n_z": 2, "psnr": 12.345, "source_names": ["a", "b"], "nmi": [[0.1, 0.2], [0.0, 0.0]],
        "active": [False, False], "num_samples": 1000, "data": "d.h5", "discrete": False,
    }  # fmt: skip
    text = markdown_report(metrics)
    assert text.startswith("# Evaluation of `last.ckpt` (step 7)")
    assert "| D | – |" in text and "| active latents | 0 / 2 |" in text and "| PSNR (dB) | 12.35 |" in text
    assert "| a | – | – |" in text and "continuous latents" in text


def test_markdown_report_shows_the_papers_psnr_beside_the_float_psnr_when_present():
    metrics = {
        "infom": 0.5, "infoc": 0.25, "infoe": 0.75, "num_active": 1, "n_z": 2, "psnr": 23.8, "psnr_paper": 35.704,
        "num_samples": 10, "data": "d.h5", "discrete": True,
    }  # fmt: skip
    lines = markdown_report(metrics).splitlines()
    at = lines.index("| PSNR (dB) | 23.80 |")
    assert lines[at + 1] == "| PSNR, paper's uint8 computation (dB) | 35.70 |"
    del metrics["psnr_paper"]
    assert "paper's uint8" not in markdown_report(metrics)
