"""Lesson 03's quality-vs-steps measurement and the reference lines of every quality plot: the
classifier's ceiling and the floor's band are drawn, the shipped files say how they were made."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from sdcourse import checkpoint, evaluate  # noqa: E402
from sdcourse.experiments import guidance_sweep, quality_plots, steps_quality  # noqa: E402

KEYS = {"accuracy", "fid", "fid_floor_mean", "fid_floor_sd", "fid_test_vs_test", "classifier_real_accuracy",
        "nearest_neighbour", "n", "seconds"}


def _labels(ax) -> list[str]:
    return [h.get_label() for h in ax.get_legend_handles_labels()[0]]


def test_measure_scores_each_sampler_with_its_references(tmp_path):
    ddpm = checkpoint.load_model("ddpm_mnist")
    rows = steps_quality.measure(ddpm.model, ddpm.schedule, n=10, step_counts=[2], with_ddpm=False, progress=False)
    assert list(rows) == ["DDIM-2"] and KEYS <= set(rows["DDIM-2"])
    assert rows["DDIM-2"]["fid_floor_sd"] > 0
    path = steps_quality.save(rows, tmp_path / "q.json", command="test", hardware="here")
    assert steps_quality.load(path)["rows"] == json.loads(json.dumps(rows))


def test_the_plot_draws_the_classifier_ceiling_and_the_floor_band():
    shipped = steps_quality.load()
    fig = steps_quality.plot(shipped["rows"], "source", ddpm_accuracy=(0.97, 200))
    acc_ax, fid_ax = fig.axes
    ceiling = f"classifier on real digits ({evaluate.classifier_real_accuracy():.1%})"
    assert ceiling in _labels(acc_ax)
    assert any(label.startswith("real train vs test") for label in _labels(fid_ax))
    plt.close(fig)


@pytest.mark.parametrize("load", [steps_quality.load, guidance_sweep.load_shipped])
def test_shipped_measurements_say_how_they_were_made(load):
    shipped = load()
    assert shipped["command"].startswith("python bench/") and "CPU" in shipped["hardware"]
    rows = shipped["rows"].values() if isinstance(shipped["rows"], dict) else shipped["rows"]
    for row in rows:
        assert row["fid_floor_sd"] > 0 and 0.9 < row["classifier_real_accuracy"] < 1


def test_draw_floor_marks_a_test_vs_test_line_at_another_n():
    fig, ax = plt.subplots()
    quality_plots.draw_floor(ax, 26.0, 4.0, 31.8, test_n=500, n=1000)
    assert "real test vs test (n=500): 31.8" in _labels(ax)
    plt.close(fig)
