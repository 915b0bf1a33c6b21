"""Auto-graded exercises: ``check(name, your_function)`` compares a student's function with the library's.

Each notebook ends with one or two exercises marked ✓: a stub the student fills in, then
``check("covariance", covariance)``. The check calls the function on a few fixed inputs
(seeded, including the edge cases the lesson warns about), compares every output with
the toolkit's own implementation — the one the lesson asserted its scratch code
against — and reports, for the first case that differs, what was passed, what was
expected and a hint. It never looks at the code, only at what it returns.

In a notebook a failed check prints its report and returns a false :class:`Result`
(so "Run all" goes on to the next exercise); with ``strict=True``, or the environment
variable ``EMOZONE_STRICT_CHECKS=1`` (what the tests and the solutions use), it raises
:class:`ExerciseFailed`. ``python -m emozone_lite.grading`` lists the exercises.

Examples:
    >>> import numpy as np
    >>> check("jitter", lambda x: float(np.mean(np.diff(np.asarray(x), 2, axis=0) ** 2)), quiet=True).passed
    True
    >>> check("jitter", lambda x: 0.0, quiet=True).passed
    False
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["Exercise", "ExerciseFailed", "Result", "EXERCISES", "check", "describe", "exercises"]


class ExerciseFailed(AssertionError):
    """A strict :func:`check` whose function did not reproduce the library's output."""


@dataclass(frozen=True)
class Exercise:
    """One auto-graded exercise: what to write, the inputs it is called on and the reference.

    ``cases(rng)`` returns a list of ``(label, args)``; ``reference(*args)`` gives the
    expected output (an array, a number, or a tuple of them), compared with
    ``np.allclose(rtol, atol)``.
    """

    name: str
    notebook: str
    tier: str
    task: str
    hint: str
    cases: Callable[[np.random.Generator], list[tuple[str, tuple]]]
    reference: Callable
    rtol: float = 1e-5
    atol: float = 1e-6


@dataclass
class Result:
    """The outcome of a :func:`check`; true when every case matched."""

    exercise: str
    passed: bool
    message: str
    cases: int = 0
    failures: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return f"Result({self.exercise!r}, passed={self.passed})"


# --------------------------------------------------------------------------- references
def _t(x, dtype=torch.float64) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=dtype)


def _ref_covariance(quats, scales):
    from .render._torch import covariances_3d

    return covariances_3d(quats, scales)


def _ref_composite(alphas, colors):
    from .render._torch import _composite_pixels

    g = alphas.shape[0]
    # every Gaussian centred on the pixel (σ = 0), so its alpha is its opacity
    color, T = _composite_pixels(
        torch.zeros(1, 2, dtype=alphas.dtype),
        torch.zeros(g, 2, dtype=alphas.dtype),
        torch.tensor([[1.0, 0.0, 1.0]], dtype=alphas.dtype).expand(g, 3),
        alphas,
        colors,
    )
    return color[0], T[0]


def _ref_mel_rows(t, fps, n_mel):
    from .audio import _window_index

    return _window_index(t + 1, fps, n_mel)[t]


def _ref_fill_failed(values, ok):
    from .aus import fill_failed_frames

    return fill_failed_frames(values, ok)


def _ref_zone_membership(d2, tau):
    from .zones import _membership_from_sq_dists

    return _membership_from_sq_dists(d2, tau)


def _ref_biased_attention(q, k, v, zone_weights, bias_table, token_modality):
    from .attention import sz_pab_attention

    return sz_pab_attention(q, k, v, token_modality, zone_weights, bias_table, need_weights=False)[0]


def _ref_revin(x, eps):
    from .temporal import RevIN

    return RevIN(x.shape[1], eps=eps, affine=False)(x, "norm")


def _ref_jaw(j_speech, j_expression, p):
    from .teacher.rig import jaw_soft_max

    return jaw_soft_max(j_speech, j_expression, p)


def _ref_jitter(track):
    from .metrics import jitter

    return jitter(track)


def _ref_lip_sync(pred_open, gt_open):
    from .metrics import lip_sync_corr

    return lip_sync_corr(pred_open, gt_open)


def _ref_modality_mass(weights, token_modality):
    from .attention import modality_mass

    return modality_mass(weights, token_modality)


# --------------------------------------------------------------------------- cases
def _unit_quats(rng, n):
    q = rng.normal(size=(n, 4))
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def _cases_covariance(rng):
    q, s = _unit_quats(rng, 6), np.exp(rng.uniform(np.log(0.05), np.log(2.0), size=(6, 3)))
    flat = s.copy()
    flat[:, 2] = 0.0
    return [
        ("identity rotation", (_t([[1.0, 0, 0, 0]]), _t([[0.5, 1.0, 2.0]]))),
        ("random rotations and scales", (_t(q), _t(s))),
        ("flat splats (one scale 0)", (_t(q), _t(flat))),
    ]


def _cases_composite(rng):
    g = 12
    colors = _t(rng.uniform(size=(g, 3)))
    return [
        ("one Gaussian, alpha 0.5", (_t([0.5]), _t([[1.0, 0.0, 0.0]]))),
        ("random alphas", (_t(rng.uniform(0, 0.6, size=g)), colors)),
        ("alphas below 1/255 are skipped", (_t([0.003, 0.5, 0.002, 0.3] * 3), colors)),
        ("alpha 1 is clamped to 0.999", (_t([1.0] + [0.4] * (g - 1)), colors)),
        ("early stop once T would fall to 1e-4", (_t([0.9] * g), colors)),
    ]


def _cases_mel_rows(rng):
    return [
        ("frame 13 at 30 fps", (13, 30.0, 400)),
        ("frame 0 (clipped at the start)", (0, 25.0, 400)),
        ("the last frame (clipped at the end)", (99, 25.0, 200)),
        ("frame 57 at 24 fps", (57, 24.0, 400)),
    ]


def _cases_fill_failed(rng):
    v = rng.normal(size=(12, 3))
    mid, ends, gaps = np.ones(12, bool), np.ones(12, bool), np.ones(12, bool)
    mid[5] = False
    ends[[0, 1, 11]] = False
    gaps[[2, 3, 4, 8]] = False
    return [
        ("one failed frame in the middle", (v, mid)),
        ("failed first and last frames (hold the nearest)", (v, ends)),
        ("a run of failed frames and a single one", (v, gaps)),
    ]


def _cases_zone_membership(rng):
    d2 = rng.uniform(0, 4e-4, size=(8, 3))
    return [
        ("distances about the falloff", (_t(d2), 0.01)),
        ("a large falloff (close to uniform)", (_t(d2), 1.0)),
        ("points far from every zone (d²/τ² ≈ 1000)", (_t(d2 + 0.1), 0.01)),
    ]


def _cases_biased_attention(rng):
    from .attention import make_token_modality

    n, d, z = 6, 8, 3
    mod = make_token_modality(3, 4)
    m = mod.shape[0]
    w = rng.dirichlet(np.ones(z), size=n)
    q, k, v = (_t(rng.normal(size=s)) for s in ((n, d), (m, d), (m, d)))
    zero = torch.zeros(z, 3, dtype=torch.float64)
    table = _t([[-4.0, 2.0, 0.0], [1.0, 1.0, 0.0], [2.0, -4.0, 0.0]])
    one_zone = torch.zeros(n, z, dtype=torch.float64)
    one_zone[:, 0] = 1.0
    return [
        ("no bias (plain scaled dot-product attention)", (q, k, v, _t(w), zero, mod)),
        ("the default-like zone x modality table", (q, k, v, _t(w), table, mod)),
        ("hard zone memberships", (q, k, v, one_zone, table, mod)),
    ]


def _cases_revin(rng):
    x = rng.normal(size=(2, 4, 32)) * rng.uniform(0.1, 3, size=(1, 4, 1)) + rng.normal(size=(1, 4, 1))
    flat = x.copy()
    flat[:, 1] = 0.25  # an inactive AU: constant over the window
    return [
        ("random windows", (_t(x), 1e-5)),
        ("a constant channel (eps keeps it finite)", (_t(flat), 1e-5)),
        ("a large eps", (_t(x), 0.5)),
    ]


def _cases_jaw(rng):
    js, je = rng.uniform(0, 1, size=10), rng.uniform(0, 1, size=10)
    return [
        ("both closed", (_t([0.0]), _t([0.0]), 4.0)),
        ("p = 1 adds", (_t(js), _t(je), 1.0)),
        ("p = 4 (the teacher's)", (_t(js), _t(je), 4.0)),
        ("one request only", (_t(js), _t(np.zeros(10)), 4.0)),
    ]


def _cases_jitter(rng):
    t = np.arange(20.0)
    return [
        ("a quadratic a·t², a = 0.5 (jitter (2a)² = 1)", (0.5 * t**2,)),
        ("an AU track [T, 17]", (rng.normal(size=(30, 17)),)),
        ("landmarks [T, K, 2]", (rng.normal(size=(10, 5, 2)),)),
    ]


def _cases_lip_sync(rng):
    g = np.abs(np.sin(np.linspace(0, 6, 40)))
    return [
        ("a noisy copy", (g + 0.2 * rng.normal(size=40), g)),
        ("an affine copy (correlation 1)", (3 * g + 1, g)),
        ("a mouth that moves the other way", (1 - g, g)),
    ]


def _cases_modality_mass(rng):
    from .attention import make_token_modality

    mod = make_token_modality(5, 17)
    w = torch.softmax(_t(rng.normal(size=(4, mod.shape[0]))), dim=-1)
    order = torch.as_tensor(rng.permutation(mod.shape[0]))
    return [
        ("5 audio + 17 AU tokens + null", (w, mod)),
        ("tokens in any order", (w[:, order], mod[order])),
    ]


EXERCISES: dict[str, Exercise] = {
    e.name: e
    for e in [
        Exercise(
            "covariance", "00_gaussian_splatting", "★★",
            "covariance(quats, scales) → Σ [N, 3, 3] from unit quaternions [N, 4] (w, x, y, z) and scales [N, 3]: "
            "Σ = R S Sᵀ Rᵀ with R the quaternion's rotation matrix and S = diag(scales).",
            "Write R entry by entry from (w, x, y, z) (the formula in section 1), then M = R * scales[:, None, :] "
            "scales R's columns and Σ = M @ M.transpose(1, 2).",
            _cases_covariance, _ref_covariance, 1e-6, 1e-9,
        ),
        Exercise(
            "composite", "00_gaussian_splatting", "★★",
            "composite(alphas, colors) → (color [3], T): front-to-back compositing at one pixel of G Gaussians "
            "sorted front to back, alphas [G] = o·exp(−σ), colors [G, 3]: clamp each alpha to 0.999, skip alphas "
            "below 1/255, and stop before the Gaussian that would bring the transmittance T to 1e-4 or below.",
            "Loop over the Gaussians keeping T (starting at 1): a = min(0.999, alpha); skip if a < 1/255; "
            "if T·(1 − a) <= 1e-4 stop (break) before adding it; else color += colors[i]·a·T and T *= 1 − a.",
            _cases_composite, _ref_composite, 1e-6, 1e-9,
        ),
        Exercise(
            "mel_rows", "01_audio_features", "★",
            "mel_rows(t, fps, n_mel) → the 16 log-mel row indices [16] (ints) that video frame t's window reads, "
            "for a log-mel with n_mel rows at 50 Hz: centred on the row nearest t·50/fps, 8 rows before it and 7 "
            "after, clipped to 0 … n_mel − 1.",
            "centre = round(t * 50 / fps) (np.rint); rows = centre + np.arange(-8, 8); np.clip them.",
            _cases_mel_rows, _ref_mel_rows, 0.0, 0.0,
        ),
        Exercise(
            "fill_failed", "02_action_units", "★★",
            "fill_failed(values, ok) → [T, K]: replace the rows of values [T, K] where ok [T] is False by linear "
            "interpolation in time between the good rows; before the first and after the last good row hold the "
            "nearest good value.",
            "np.interp(t, t[ok], values[ok, k]) does one column and already holds the end values.",
            _cases_fill_failed, _ref_fill_failed, 1e-5, 1e-6,
        ),
        Exercise(
            "zone_membership", "03_zone_masks", "★",
            "zone_membership(d2, tau) → w [N, Z]: the soft membership softmax_z(−d2 / tau²) of squared distances "
            "d2 [N, Z] to each zone, rows summing to 1 — also for points far from every zone.",
            "exp(−1000) is 0 in floating point: subtract each row's largest logit before exp, or use torch.softmax.",
            _cases_zone_membership, _ref_zone_membership, 1e-6, 1e-9,
        ),
        Exercise(
            "biased_attention", "04_attention_bias", "★★",
            "biased_attention(q, k, v, zone_weights, bias_table, token_modality) → fused [N, d]: attention of "
            "queries q [N, d] over tokens k, v [M, d] with logits q·kᵀ/√d + Σ_z w_iz B[z, m(j)], where "
            "zone_weights w [N, Z], bias_table B [Z, 3] and token_modality m [M] (0 audio, 1 AU, 2 null).",
            "The bias is one matrix product: zone_weights @ bias_table[:, token_modality] is [N, M]; add it to the "
            "scaled scores, softmax over the last axis, multiply by v.",
            _cases_biased_attention, _ref_biased_attention, 1e-6, 1e-9,
        ),
        Exercise(
            "revin", "05_temporal_au_encoder", "★",
            "revin(x, eps) → [B, C, L]: RevIN's normalisation (no affine): each channel of each window minus its "
            "mean over time, divided by sqrt(variance + eps) with the population variance.",
            "x.mean(-1, keepdim=True) and x.var(-1, keepdim=True, unbiased=False); a constant channel then gives 0.",
            _cases_revin, _ref_revin, 1e-6, 1e-9,
        ),
        Exercise(
            "jaw_soft_max", "06_gaussian_deformation", "★",
            "jaw_soft_max(j_speech, j_expression, p) → [T]: the teacher's combined jaw opening "
            "(j_s^p + j_e^p)^(1/p) of a speech and an AU26 request (both ≥ 0), 0 where both are 0.",
            "With p = 1 it is the sum; with p = 4 it is close to the larger request. (0 ** 0.25 is fine; watch "
            "for negative bases if you subtract anything.)",
            _cases_jaw, _ref_jaw, 1e-6, 1e-9,
        ),
        Exercise(
            "jitter", "07_train_and_evaluate", "★",
            "jitter(track) → float: the mean squared second difference over time (axis 0) of a track [T, ...], "
            "averaged over frames and every other axis.",
            "d2 = x[2:] − 2·x[1:-1] + x[:-2]; return float((d2 ** 2).mean()).",
            _cases_jitter, _ref_jitter, 1e-6, 1e-9,
        ),
        Exercise(
            "lip_sync", "07_train_and_evaluate", "★",
            "lip_sync(pred_open, gt_open) → float: the lip-sync score, the Pearson correlation of two "
            "mouth-opening series [T].",
            "Centre both series, then Σ pc·gc / sqrt(Σ pc² · Σ gc²) (or np.corrcoef(p, g)[0, 1]).",
            _cases_lip_sync, _ref_lip_sync, 1e-6, 1e-9,
        ),
        Exercise(
            "modality_mass", "08_expression_studio", "★",
            "modality_mass(weights, token_modality) → [N, 3]: the attention mass each Gaussian gives to audio, AU "
            "and null tokens — the sums of weights [N, M] over the tokens of each modality (token_modality [M]).",
            "For m in 0, 1, 2: weights[:, token_modality == m].sum(1); stack the three as columns.",
            _cases_modality_mass, _ref_modality_mass, 1e-6, 1e-9,
        ),
    ]
}  # fmt: skip


# --------------------------------------------------------------------------- checking
def _as_array(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _compare(got, want, ex: Exercise) -> str | None:
    """``None`` when ``got`` matches ``want``, else what differs."""
    if isinstance(want, tuple):
        if not isinstance(got, (tuple, list)) or len(got) != len(want):
            return f"expected a tuple of {len(want)} outputs, got {type(got).__name__}"
        for i, (g, w) in enumerate(zip(got, want)):
            why = _compare(g, w, ex)
            if why is not None:
                return f"output {i}: {why}"
        return None
    try:
        g = _as_array(got)
    except (TypeError, ValueError) as e:
        return f"the output is not numeric ({type(got).__name__}: {e})"
    w = _as_array(want)
    if g.shape != w.shape:
        return f"expected shape {w.shape}, got {g.shape}"
    if not np.isfinite(g).all() and np.isfinite(w).all():
        return "the output has NaN or inf where the reference is finite"
    if not np.allclose(g, w, rtol=ex.rtol, atol=ex.atol, equal_nan=True):
        err = np.abs(g - w)
        i = np.unravel_index(int(np.nanargmax(err)), err.shape) if err.ndim else ()
        return f"largest difference {float(err[i]):.3g} at index {tuple(int(j) for j in i)}: got {g[i]:.6g}, expected {w[i]:.6g}"
    return None


def _summary(args: tuple) -> str:
    parts = []
    for a in args:
        if isinstance(a, (torch.Tensor, np.ndarray)):
            parts.append(f"{type(a).__name__}{list(a.shape)}")
        else:
            parts.append(repr(a))
    return ", ".join(parts)


def check(name: str, fn: Callable, *, strict: bool | None = None, quiet: bool = False) -> Result:
    """Grade ``fn`` on exercise ``name`` against the library's implementation.

    Args:
        name: an exercise in :data:`EXERCISES` (``python -m emozone_lite.grading`` lists them).
        fn: the student's function, called as ``fn(*args)`` on each case (fresh copies of the
            inputs, so changing them in place does no harm).
        strict: raise :class:`ExerciseFailed` on failure; default: the environment variable
            ``EMOZONE_STRICT_CHECKS`` is ``1``.
        quiet: do not print the report.

    Returns:
        A :class:`Result`, true when every case matched.

    Raises:
        ValueError: ``name`` is not an exercise or ``fn`` is not callable.
        ExerciseFailed: a failure with ``strict``.
    """
    if name not in EXERCISES:
        raise ValueError(f"unknown exercise {name!r}; the exercises are {sorted(EXERCISES)}")
    if not callable(fn):
        raise ValueError(f"check({name!r}, fn): fn must be your function, got {type(fn).__name__}")
    if strict is None:
        strict = os.environ.get("EMOZONE_STRICT_CHECKS", "") == "1"
    ex = EXERCISES[name]
    cases = ex.cases(np.random.default_rng(20261203))
    failures: list[str] = []
    for label, args in cases:
        want = ex.reference(*copy.deepcopy(args))
        try:
            got = fn(*copy.deepcopy(args))
        except NotImplementedError:
            failures = ["not implemented yet: the stub still raises NotImplementedError"]
            break
        except Exception as e:  # the student's code failed: report it, do not crash the grader
            failures.append(f"case '{label}' ({_summary(args)}): your function raised {type(e).__name__}: {e}")
            continue
        why = _compare(got, want, ex)
        if why is not None:
            failures.append(f"case '{label}' ({_summary(args)}): {why}")
    passed = not failures
    if passed:
        message = f"✓ {name}: all {len(cases)} cases match emozone_lite"
    else:
        stub = failures[0].startswith("not implemented")
        lines = failures if stub else [f"{len(failures)} of {len(cases)} cases fail", *failures]
        message = f"✗ {name}: " + "\n  ".join(lines)
        message += f"\n  Task: {ex.task}\n  Hint: {ex.hint}"
    result = Result(name, passed, message, len(cases), failures)
    if not quiet:
        print(message)
    if strict and not passed:
        raise ExerciseFailed(message)
    return result


def describe(name: str) -> str:
    """The task and hint of exercise ``name``."""
    if name not in EXERCISES:
        raise ValueError(f"unknown exercise {name!r}; the exercises are {sorted(EXERCISES)}")
    ex = EXERCISES[name]
    return f"{ex.name} ({ex.notebook}, {ex.tier}): {ex.task}\nHint: {ex.hint}"


def exercises(notebook: str | None = None) -> list[str]:
    """The exercise names, all or those of one notebook (``"03"`` or ``"03_zone_masks"``)."""
    return [n for n, e in EXERCISES.items() if notebook is None or e.notebook.startswith(notebook)]


if __name__ == "__main__":
    for n in EXERCISES:
        print(describe(n), end="\n\n")
