"""The lesson 04 checks pass a learner's correct guidance and name the cause of typical wrong ones."""

from __future__ import annotations

import pytest
import torch

from sdcourse.checks import CheckFailed, ToyConditionalEps, check_guidance, check_guided_eps

NULL = 10

# ---- the combination: what a learner might write ------------------------------------------------


def guidance_reference(eps_uncond, eps_cond, s):
    return eps_uncond + s * (eps_cond - eps_uncond)


def guidance_paper_form(eps_uncond, eps_cond, s):  # also correct: (1 + w) eps_cond - w eps_uncond, w = s - 1
    w = s - 1
    return (1 + w) * eps_cond - w * eps_uncond


def guidance_lerp(eps_uncond, eps_cond, s):  # also correct: torch.lerp extrapolates for weight > 1
    return torch.lerp(eps_uncond, eps_cond, s)


GUIDANCE_WRONG = {
    "swapped halves": (lambda u, c, s: c + s * (u - c), "swapped the halves"),
    "paper's w as scale": (lambda u, c, s: (1 + s) * c - s * u, "used guidance_scale as the paper's w"),
    "scale - 1": (lambda u, c, s: u + (s - 1) * (c - u), r"used guidance_scale - 1"),
    "direction only": (lambda u, c, s: s * (c - u), "returned only the guidance direction"),
    "wrong sign": (lambda u, c, s: u - s * (c - u), "wrong sign"),
    "scaled cond": (lambda u, c, s: s * c, "scaled the conditional prediction alone"),
    "returns cond": (lambda u, c, s: c, None),
    "wrong shape": (lambda u, c, s: (u + s * (c - u))[0], "expected shape"),
}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("fn", [guidance_reference, guidance_paper_form, guidance_lerp])
def test_check_guidance_passes_correct(fn, seed, capsys):
    check_guidance(fn, seed=seed)
    assert "guidance: matches the reference" in capsys.readouterr().out


@pytest.mark.parametrize("case", list(GUIDANCE_WRONG))
def test_check_guidance_rejects_mistake(case):
    fn, cause = GUIDANCE_WRONG[case]
    with pytest.raises(CheckFailed, match=cause or "should be") as info:
        check_guidance(fn, seed=0)
    if cause is None:
        assert "Likely cause" not in str(info.value)


def test_check_guidance_fresh_inputs_without_seed():
    seen = []

    def spy(u, c, s):
        seen.append((u.clone(), s))
        return guidance_reference(u, c, s)

    check_guidance(spy, trials=2)
    check_guidance(spy, trials=2)
    assert not torch.equal(seen[0][0], seen[2][0])


# ---- the batched forward pass: what a learner might write ---------------------------------------


def guided_reference(model, x_t, t, labels, s):
    null = torch.full_like(labels, NULL)
    eps = model(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([null, labels]))
    eps_uncond, eps_cond = eps.chunk(2)
    return eps_uncond + s * (eps_cond - eps_uncond)


def guided_by_slicing(model, x_t, t, labels, s):  # also correct: slice instead of chunk
    b = x_t.shape[0]
    eps = model(x_t.repeat(2, 1, 1, 1), t.repeat(2), torch.cat([torch.full_like(labels, NULL), labels]))
    return torch.lerp(eps[:b], eps[b:], s)


def _guided(model, x_t, t, labels, s, *, null=NULL, order="uncond first", scale=None, two_passes=False):
    nulls = labels if null is None else torch.full_like(labels, null)  # None: no null label at all
    if two_passes:
        u, c = model(x_t, t, nulls), model(x_t, t, labels)
    else:
        first, second = (nulls, labels) if order == "uncond first" else (labels, nulls)
        eps = model(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([first, second]))
        u, c = eps.chunk(2)
    s = s if scale is None else scale(s)
    return u + s * (c - u)


GUIDED_WRONG = {
    "labels first, chunk as uncond first": (
        lambda *a: _guided(*a, order="cond first"), r"unconditional half first, torch.cat\(\[null_labels"
    ),
    "two separate passes": (lambda *a: _guided(*a, two_passes=True), r"called 2 time\(s\).*ONE forward pass"),
    "label 0 as no label": (lambda *a: _guided(*a, null=0), "used label 0 as \"no label\""),
    "labels in both halves": (lambda *a: _guided(*a, null=None), "both halves got the labels"),
    "paper's w": (lambda *a: _guided(*a, scale=lambda s: s + 1), "used guidance_scale as the paper's w"),
    "scale - 1": (lambda *a: _guided(*a, scale=lambda s: s - 1), r"used guidance_scale - 1"),
    "t not doubled": (
        lambda m, x, t, y, s: m(torch.cat([x, x]), t, torch.cat([torch.full_like(y, NULL), y])).chunk(2)[0],
        r"raised ValueError.*t is \(\d,\)",
    ),
}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("fn", [guided_reference, guided_by_slicing])
def test_check_guided_eps_passes_correct(fn, seed, capsys):
    check_guided_eps(fn, seed=seed)
    assert "guided_eps: matches the reference" in capsys.readouterr().out


@pytest.mark.parametrize("case", list(GUIDED_WRONG))
def test_check_guided_eps_rejects_mistake(case):
    fn, cause = GUIDED_WRONG[case]
    with pytest.raises(CheckFailed, match=cause):
        check_guided_eps(fn, seed=0)


def test_library_guided_eps_passes_its_check(capsys):
    from sdcourse.guidance import guided_eps

    check_guided_eps(guided_eps, seed=3)
    assert "guided_eps: matches" in capsys.readouterr().out


def test_toy_model_is_per_image_and_label_dependent():
    model = ToyConditionalEps(seed=0)
    gen = torch.Generator().manual_seed(0)
    x, t = torch.randn(3, 1, 28, 28, generator=gen), torch.tensor([5, 500, 999])
    labels = torch.tensor([1, 2, NULL])
    whole = model(x, t, labels)
    for i in range(3):
        assert torch.equal(model(x[i:i + 1], t[i:i + 1], labels[i:i + 1]), whole[i:i + 1])
    assert not torch.allclose(model(x, t, torch.tensor([1, 1, 1])), whole)
    with pytest.raises(ValueError, match="labels must be integers 0..10"):
        model(x, t, torch.tensor([1, 2, 11]))
