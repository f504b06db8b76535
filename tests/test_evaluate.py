"""Sample-quality metrics: the Frechet distance against scipy's matrix square root, accuracy, diversity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import linalg

from sdcourse import evaluate


def _reference_fid(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * covmean))


def test_frechet_distance_matches_scipy_sqrtm():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(400, 16, generator=gen, dtype=torch.float64)
    b = torch.randn(300, 16, generator=gen, dtype=torch.float64) @ torch.randn(16, 16, generator=gen,
                                                                              dtype=torch.float64) * 0.5 + 1.0
    assert evaluate.frechet_distance(a, b) == pytest.approx(_reference_fid(a.numpy(), b.numpy()), rel=1e-6)


def test_frechet_distance_of_a_set_with_itself_is_zero_and_grows_with_a_shift():
    a = torch.randn(500, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert abs(evaluate.frechet_distance(a, a)) < 1e-8
    assert evaluate.frechet_distance(a, a + 2.0) == pytest.approx(8 * 4.0, rel=1e-6)  # ||mu shift||^2


def test_frechet_distance_rejects_mismatched_features():
    with pytest.raises(ValueError, match="features must be"):
        evaluate.frechet_distance(torch.zeros(5, 3), torch.zeros(5, 4))


def test_shipped_classifier_reads_real_digits():
    from sdcourse.data import load_mnist

    test = load_mnist("test", verbose=False)
    quality = evaluate.evaluate_samples(test.images[:200], test.labels[:200])
    assert quality.accuracy > 0.95
    assert quality.fid < 2 * quality.fid_floor  # real digits sit near the real-vs-real floor


def test_noise_scores_far_worse_than_digits():
    noise = torch.rand(200, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    quality = evaluate.evaluate_samples(noise, torch.arange(200) % 10)
    assert quality.accuracy < 0.5
    assert quality.fid > 10 * quality.fid_floor


def test_diversity_is_zero_for_copies():
    from sdcourse.data import load_mnist

    digit = load_mnist("test", verbose=False).images[:1]
    assert evaluate.mean_pairwise_distance(digit.repeat(5, 1, 1, 1)) == pytest.approx(0.0, abs=1e-9)
    assert evaluate.mean_pairwise_distance(load_mnist("test", verbose=False).images[:20]) > 1.0


def test_conditional_accuracy_counts_the_digits_read_as_asked():
    from sdcourse.data import load_mnist

    test = load_mnist("test", verbose=False)
    images, labels = test.images[:100], test.labels[:100]
    assert evaluate.conditional_accuracy(images, labels) > 0.95
    assert evaluate.conditional_accuracy(images, (labels + 1) % 10) < 0.05  # asked for the wrong digit
    read = evaluate.load_classifier()(images).argmax(1)  # the classifier's own forward pass, in one batch
    expected = (read == labels).double().mean().item()
    assert evaluate.conditional_accuracy(images, labels) == pytest.approx(expected)


def test_labels_of_the_wrong_length_are_refused():
    with pytest.raises(ValueError, match="labels must have shape"):
        evaluate.evaluate_samples(torch.zeros(4, 1, 28, 28), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="labels must have shape"):
        evaluate.conditional_accuracy(torch.zeros(4, 1, 28, 28), torch.zeros(3, dtype=torch.long))


def test_the_floor_is_a_mean_and_sd_over_disjoint_training_subsets():
    mean, sd, subsets = evaluate.real_floor(200)
    assert subsets == evaluate.FLOOR_SUBSETS and sd > 0
    train, test = evaluate._real("train")[2], evaluate._real("test")[2][:200]
    values = np.array([evaluate.frechet_distance(train[i * 200:(i + 1) * 200], test) for i in range(subsets)])
    assert mean == pytest.approx(values.mean()) and sd == pytest.approx(values.std(ddof=1))
    assert len(set(values.round(6))) == subsets  # four different draws, not one repeated


def test_test_vs_test_uses_two_disjoint_halves_at_most():
    fid, m = evaluate.test_vs_test(5000)
    assert m == len(evaluate._real("test")[2]) // 2 and fid > 0


def test_the_classifier_ceiling_is_its_accuracy_on_every_real_test_digit():
    from sdcourse.data import load_mnist

    test = load_mnist("test", verbose=False)
    read = evaluate.load_classifier()(test.images).argmax(1)
    assert evaluate.classifier_real_accuracy() == pytest.approx((read == test.labels).double().mean().item())
    assert 0.9 < evaluate.classifier_real_accuracy() < 1.0  # below 100 %: the ceiling of accuracy plots


def test_nearest_neighbour_tells_copies_from_new_digits():
    from sdcourse.data import load_mnist

    train = load_mnist("train", verbose=False).images
    copies = evaluate.nearest_neighbour(train[:50])
    assert copies["sample_median"] == pytest.approx(0.0, abs=1e-6) and copies["fraction_closer"] == 1.0
    held_out = evaluate.nearest_neighbour(load_mnist("test", verbose=False).images[:50])
    assert held_out["fraction_closer"] == 0.0 and held_out["sample_median"] > 5
    # against a brute-force numpy distance
    x = load_mnist("test", verbose=False).images[:3].flatten(1).double().numpy()
    d = np.sqrt(((x[:, None, :] - train.flatten(1).double().numpy()[None]) ** 2).sum(-1)).min(1)
    assert evaluate.nearest_training_digits(load_mnist("test", verbose=False).images[:3])[0].numpy() == (
        pytest.approx(d))


def test_every_shipped_card_reports_the_references_and_the_memorization_check():
    import json
    from pathlib import Path

    keys = {"fid_floor_mean", "fid_floor_sd", "fid_test_vs_test", "classifier_real_accuracy", "nearest_neighbour"}
    cards = [json.loads(p.read_text()) for p in Path(__file__).parents[1].glob("checkpoints/*.json")]
    entries = [m for card in cards if card["kind"] in ("ddpm", "ldm") for m in card["metrics"].values()]
    assert len(entries) >= 3
    for entry in entries:
        assert keys <= set(entry) and entry["fid_floor_sd"] > 0
        assert {"sample_median", "sample_p5", "sample_min", "held_out_median", "held_out_p5", "held_out_min",
                "fraction_closer"} <= set(entry["nearest_neighbour"])
