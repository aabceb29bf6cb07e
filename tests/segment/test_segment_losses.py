"""Losses against hand-computed values; ignore_index honoured by every loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from metallo.errors import ConfigError, UnknownNameError
from metallo.segment import get_loss, inverse_frequency_weights

LOSSES = [("ce", {}), ("weighted_ce", {"weight": [1.0, 2.0, 0.5]}), ("focal", {"gamma": 2.0, "alpha": [1, 2, 3]}),
          ("dice", {}), ("ce_dice", {"weight": [1.0, 2.0, 0.5], "dice_weight": 0.5}), ("lovasz", {}),
          ("ce_lovasz", {"weight": [1.0, 2.0, 0.5], "lovasz_weight": 0.5})]


def test_focal_matches_its_formula():
    logits = torch.tensor([[[2.0]], [[0.0]]]).reshape(1, 2, 1, 1)
    target = torch.zeros(1, 1, 1, dtype=torch.long)
    p = math.exp(2) / (math.exp(2) + 1)
    expected = -0.25 * (1 - p) ** 2 * math.log(p)
    value = get_loss("focal", gamma=2.0, alpha=[0.25, 0.75])(logits, target)
    assert float(value) == pytest.approx(expected, rel=1e-5)


def test_focal_with_gamma_zero_is_cross_entropy():
    torch.manual_seed(0)
    x, t = torch.randn(2, 4, 5, 5), torch.randint(0, 4, (2, 5, 5))
    assert float(get_loss("focal", gamma=0.0)(x, t)) == pytest.approx(float(F.cross_entropy(x, t)), rel=1e-6)


def test_weighted_ce_is_the_weighted_mean():
    x = torch.zeros(1, 2, 1, 2)
    t = torch.tensor([[[0, 1]]])
    # both pixels have -log(0.5); weights 1 and 3 -> weighted mean is still log 2
    assert float(get_loss("weighted_ce", weight=[1.0, 3.0])(x, t)) == pytest.approx(math.log(2))
    x[0, 1, 0, 1] = 5.0  # pixel 2 (class 1, weight 3) now almost right
    expected = (1 * math.log(2) + 3 * -math.log(math.exp(5) / (1 + math.exp(5)))) / 4
    assert float(get_loss("weighted_ce", weight=[1.0, 3.0])(x, t)) == pytest.approx(expected, rel=1e-6)


def test_dice_perfect_and_worst():
    t = torch.tensor([[[0, 1], [1, 0]]])
    perfect = F.one_hot(t, 2).permute(0, 3, 1, 2).float() * 100
    assert float(get_loss("dice", smooth=0.0)(perfect, t)) == pytest.approx(0.0, abs=1e-6)
    assert float(get_loss("dice", smooth=0.0)(-perfect, t)) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize(("name", "kwargs"), LOSSES)
def test_ignored_pixels_do_not_count(name, kwargs):
    torch.manual_seed(0)
    x, t = torch.randn(2, 3, 6, 6), torch.randint(0, 3, (2, 6, 6))
    t[:, :3] = 255
    loss = get_loss(name, **kwargs)
    base = float(loss(x, t))
    x2 = x.clone()
    x2[:, :, :3] = torch.randn(2, 3, 3, 6) * 10
    assert float(loss(x2, t)) == pytest.approx(base, rel=1e-6)
    all_ignored = torch.full_like(t, 255)
    assert float(loss(x, all_ignored)) == pytest.approx(0.0, abs=1e-6) or name == "dice"
    assert math.isfinite(float(loss(x, all_ignored)))


@pytest.mark.parametrize(("name", "kwargs"), LOSSES)
def test_losses_work_on_sparse_pixel_layout(name, kwargs):
    x, t = torch.randn(2, 3, 50, requires_grad=True), torch.randint(0, 3, (2, 50))
    get_loss(name, **kwargs)(x, t).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_inverse_frequency_weights_known_answer():
    labels = np.array([0] * 6 + [1] * 3 + [2] * 1 + [255] * 5)
    w = inverse_frequency_weights(labels, n_classes=3)
    inv = np.array([1 / 6, 1 / 3, 1.0])
    assert np.allclose(w, inv / inv.mean())


def test_ce_dice_is_the_sum_of_its_terms():
    torch.manual_seed(1)
    x, t = torch.randn(2, 3, 5, 5), torch.randint(0, 3, (2, 5, 5))
    weight = [1.0, 2.0, 0.5]
    expected = float(F.cross_entropy(x, t, weight=torch.tensor(weight))) + 0.5 * float(get_loss("dice")(x, t))
    assert float(get_loss("ce_dice", weight=weight, dice_weight=0.5)(x, t)) == pytest.approx(expected, rel=1e-6)
    assert float(get_loss("ce_dice", dice_weight=0.0)(x, t)) == pytest.approx(float(F.cross_entropy(x, t)), rel=1e-6)


def test_square_root_inverse_frequency_is_milder():
    labels = np.array([0] * 64 + [1] * 16 + [2] * 1 + [255] * 5)
    w = inverse_frequency_weights(labels, n_classes=3, power=0.5)
    inv_sqrt = np.array([1 / 8, 1 / 4, 1.0])  # sqrt(1/64), sqrt(1/16), sqrt(1/1)
    assert np.allclose(w, inv_sqrt / inv_sqrt.mean())
    full = inverse_frequency_weights(labels, n_classes=3)
    assert w[2] / w[0] == pytest.approx(8.0) and full[2] / full[0] == pytest.approx(64.0)
    assert np.allclose(inverse_frequency_weights(labels, n_classes=3, power=0.0), 1.0)


def test_bad_loss_options():
    with pytest.raises(ConfigError, match="dice_weight"):
        get_loss("ce_dice", dice_weight=-1)
    with pytest.raises(ConfigError, match="resolved"):
        get_loss("ce_dice", weight="sqrt_inverse_frequency")
    with pytest.raises(UnknownNameError, match="ce, ce_dice, ce_lovasz, dice, focal, lovasz, weighted_ce"):
        get_loss("hinge")
    with pytest.raises(ConfigError, match="gamma"):
        get_loss("focal", gamma=-1)
    with pytest.raises(ConfigError, match="bad option"):
        get_loss("ce", gamma=2)
    with pytest.raises(ConfigError, match="inverse_frequency"):
        get_loss("focal", alpha="inverse_frequency")


def _iou_loss(pred: np.ndarray, truth: np.ndarray, n_classes: int) -> float:
    """1 - mean IoU over the classes present in ``truth``, by set counting."""
    ious = [np.sum((pred == c) & (truth == c)) / np.sum((pred == c) | (truth == c))
            for c in range(n_classes) if np.any(truth == c)]
    return 1.0 - float(np.mean(ious))


def test_lovasz_of_a_hard_prediction_is_one_minus_its_mean_iou():
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 3, (2, 9, 11))
    pred = np.where(rng.random(truth.shape) < 0.3, rng.integers(0, 3, truth.shape), truth)
    logits = F.one_hot(torch.from_numpy(pred), 3).permute(0, 3, 1, 2).float() * 1e4
    value = float(get_loss("lovasz")(logits, torch.from_numpy(truth)))
    assert value == pytest.approx(_iou_loss(pred, truth, 3), abs=1e-6)
    assert 0.1 < value < 0.9   # a real mix of right and wrong pixels, not a trivial case


def test_lovasz_of_uniform_probabilities_is_their_error():
    # every pixel errs by 1 - 1/C on its own class: the extension is linear along that ray, so
    # the loss is (1 - 1/C) x the Jaccard loss of "everything wrong", i.e. 1 - 1/C
    t = torch.tensor([[[0, 1, 2, 2, 1, 0]]])
    assert float(get_loss("lovasz")(torch.zeros(1, 3, 1, 6), t)) == pytest.approx(2 / 3, abs=1e-6)


def test_lovasz_skips_absent_classes_and_ce_lovasz_is_the_sum():
    t = torch.tensor([[[0, 0, 1, 1]]])          # class 2 absent: averaged over classes 0 and 1
    hard = F.one_hot(torch.tensor([[[0, 1, 1, 1]]]), 3).permute(0, 3, 1, 2).float() * 1e4
    assert float(get_loss("lovasz")(hard, t)) == pytest.approx(1 - (1 / 2 + 2 / 3) / 2, abs=1e-6)
    torch.manual_seed(1)
    x, t = torch.randn(2, 3, 5, 5), torch.randint(0, 3, (2, 5, 5))
    expected = float(F.cross_entropy(x, t)) + 0.5 * float(get_loss("lovasz")(x, t))
    assert float(get_loss("ce_lovasz", lovasz_weight=0.5)(x, t)) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ConfigError, match="lovasz_weight"):
        get_loss("ce_lovasz", lovasz_weight=-1.0)


def test_label_smoothing_matches_its_formula_and_skips_ignored_pixels():
    # (1 - eps) x CE of the target + eps x the mean over classes of -log p (Szegedy et al. 2016)
    torch.manual_seed(2)
    x, t = torch.randn(2, 3, 5, 5), torch.randint(0, 3, (2, 5, 5))
    t[0, 0, :] = 255
    keep = t != 255
    logp = F.log_softmax(x, dim=1).movedim(1, -1)[keep]
    hard = -logp.gather(1, t[keep][:, None].long()).squeeze(1)
    expected = float((0.9 * hard + 0.1 * -logp.mean(1)).mean())
    assert float(get_loss("ce", label_smoothing=0.1)(x, t)) == pytest.approx(expected, rel=1e-5)
    dice = float(get_loss("dice")(x, t))
    smoothed = float(get_loss("ce_dice", label_smoothing=0.1)(x, t))
    assert smoothed == pytest.approx(expected + dice, rel=1e-5)
    assert float(get_loss("ce", label_smoothing=0.0)(x, t)) == pytest.approx(float(hard.mean()), rel=1e-5)
    with pytest.raises(ConfigError, match="label_smoothing"):
        get_loss("ce_dice", label_smoothing=1.0)
