"""Adaptive density control, as in 3D Gaussian Splatting (Kerbl et al. 2023, §5.2; arXiv:2308.04079).

While a scene is optimised, the Gaussians whose projected centres keep receiving large
view-space position gradients sit in regions the current set cannot explain. Every
``refine_every`` iterations (between ``refine_start`` and ``refine_stop``):

* **densify** every Gaussian whose mean view-space gradient norm (averaged over the
  iterations it was visible, in NDC units as the paper and gsplat measure it: pixel
  gradient × ``width / 2``, ``height / 2``) exceeds ``grad_threshold``:

  - **clone** it when it is small (largest scale ≤ ``percent_dense × scene_extent``):
    an identical copy, so that the optimiser can pull the two apart (under-reconstruction);
  - **split** it when it is large: two Gaussians sampled from it (means drawn from the
    Gaussian itself as a PDF, scales divided by ``split_factor = 1.6``), the parent removed
    (over-reconstruction);

* **prune** every Gaussian with opacity below ``prune_opacity`` and, once the opacities have
  been reset at least once, those whose largest world scale exceeds
  ``prune_scale × scene_extent`` (huge ones);

and every ``reset_every`` iterations the opacities are set to at most ``reset_opacity``
(the optimiser raises the useful ones again; the rest are pruned next time).

The optimised tensors live in a dict of parameters with a leading Gaussian axis (any names;
``"means"``, ``"scales"`` (log) , ``"quats"`` and ``"opacities"`` (logit) are required) and
one Adam optimiser with one parameter group per tensor: :func:`densify_and_prune` edits the
parameters *and* Adam's moment estimates together (new Gaussians start with zero moments),
so training continues as if the set had always had that size. ``buffers`` (per-Gaussian
tensors that are not optimised, e.g. part codes) follow the same edits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..geometry import normalize_quat, quat_to_rotmat

__all__ = ["DensityConfig", "DensityControl", "select", "duplicate", "split", "reset_opacities"]

REQUIRED = ("means", "scales", "quats", "opacities")


@dataclass
class DensityConfig:
    """Schedule and thresholds of adaptive density control (defaults: the 3DGS paper's).

    The paper runs 30k iterations (densify from 500 to 15k every 100, reset every 3k);
    a portrait fitted in a few thousand iterations scales the schedule down
    (:class:`~emozone_lite.head.portrait.PortraitConfig`).
    """

    grad_threshold: float = 2e-4
    percent_dense: float = 0.01
    split_factor: float = 1.6
    prune_opacity: float = 0.005
    prune_scale: float = 0.1
    reset_opacity: float = 0.01
    refine_start: int = 500
    refine_stop: int = 15_000
    refine_every: int = 100
    reset_every: int = 3_000
    max_gaussians: int | None = None

    def __post_init__(self):
        for name in ("grad_threshold", "percent_dense", "prune_scale", "reset_opacity"):
            if not getattr(self, name) > 0:
                raise ValueError(f"DensityConfig.{name} must be > 0, got {getattr(self, name)}")
        if not self.split_factor > 1:
            raise ValueError(f"DensityConfig.split_factor must be > 1, got {self.split_factor}")
        if not 0 <= self.prune_opacity < 1:
            raise ValueError(f"DensityConfig.prune_opacity must be in [0, 1), got {self.prune_opacity}")
        for name in ("refine_every", "reset_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"DensityConfig.{name} must be >= 1, got {getattr(self, name)}")


# --------------------------------------------------------------------------- parameter surgery
def _edit(params: dict, optimizer: torch.optim.Optimizer | None, fn) -> None:
    """Replace every parameter ``p`` by ``fn(p)`` (new leaf) and Adam's moments by ``fn`` of them."""
    by_id = {}
    if optimizer is not None:
        for group in optimizer.param_groups:
            for i, p in enumerate(group["params"]):
                by_id[id(p)] = (group, i)
    for name, p in list(params.items()):
        new = torch.nn.Parameter(fn(p.detach(), zero=False), requires_grad=p.requires_grad)
        params[name] = new
        if id(p) in by_id:
            group, i = by_id[id(p)]
            state = optimizer.state.pop(p, None)
            group["params"][i] = new
            if state:
                optimizer.state[new] = {
                    k: (fn(v, zero=True) if torch.is_tensor(v) and v.ndim > 0 and v.shape[0] == p.shape[0] else v)
                    for k, v in state.items()
                }


def select(params: dict, optimizer, keep: Tensor, buffers: dict | None = None) -> None:
    """Keep only the Gaussians where ``keep [N]`` (bool) is true (pruning)."""
    _edit(params, optimizer, lambda t, zero: t[keep])
    if buffers is not None:
        for k in buffers:
            buffers[k] = buffers[k][keep]


def duplicate(params: dict, optimizer, mask: Tensor, buffers: dict | None = None) -> None:
    """Append a copy of every Gaussian where ``mask`` (clone); copies start with zero Adam moments."""
    _edit(params, optimizer, lambda t, zero: torch.cat([t, torch.zeros_like(t[mask]) if zero else t[mask]]))
    if buffers is not None:
        for k in buffers:
            buffers[k] = torch.cat([buffers[k], buffers[k][mask]])


def split(
    params: dict, optimizer, mask: Tensor, factor: float = 1.6, buffers: dict | None = None, generator=None
) -> None:
    """Replace every Gaussian where ``mask`` by two sampled from it, scales ``/ factor`` (split).

    The children's means are ``μ + R·(s ⊙ ε)``, ``ε ~ N(0, I)`` (the parent as a PDF); every
    other parameter is the parent's, with log-scales lowered by ``log(factor)``.
    """
    idx = torch.nonzero(mask).squeeze(1)
    if len(idx) == 0:
        return
    means = params["means"].detach()
    s = params["scales"].detach()[idx].exp()
    R = quat_to_rotmat(normalize_quat(params["quats"].detach()[idx]))
    eps = torch.randn((2, len(idx), 3), generator=generator, dtype=means.dtype, device=means.device)
    child_means = means[idx][None] + torch.einsum("nij,knj->kni", R, s[None] * eps)  # [2, n, 3]

    def grow(t: Tensor, name: str, zero: bool) -> Tensor:
        if zero:
            children = torch.zeros_like(t[idx]).repeat(2, *[1] * (t.ndim - 1))
        elif name == "means":
            children = child_means.reshape(-1, 3).to(t)
        elif name == "scales":
            children = (t[idx] - torch.log(torch.tensor(float(factor)))).repeat(2, 1)
        else:
            children = t[idx].repeat(2, *[1] * (t.ndim - 1))
        return torch.cat([t[~mask], children])

    for name in list(params):
        _edit_one(params, optimizer, name, lambda t, zero, name=name: grow(t, name, zero))
    if buffers is not None:
        for k in buffers:
            b = buffers[k]
            buffers[k] = torch.cat([b[~mask], b[idx].repeat(2, *[1] * (b.ndim - 1))])


def _edit_one(params: dict, optimizer, name: str, fn) -> None:
    sub = {name: params[name]}
    _edit(sub, optimizer, fn)
    params[name] = sub[name]


def reset_opacities(params: dict, optimizer, value: float) -> None:
    """Opacities ``= min(opacity, value)`` (logit parameters) and their Adam moments zeroed."""
    cap = torch.logit(torch.tensor(float(value)))
    _edit_one(params, optimizer, "opacities", lambda t, zero: torch.zeros_like(t) if zero else t.clamp_max(cap))


# --------------------------------------------------------------------------- the controller
@dataclass
class DensityControl:
    """Accumulates view-space gradients between refinements and applies :class:`DensityConfig`.

    Usage, each iteration: render with ``meta["means2d"].retain_grad()``, ``loss.backward()``,
    :meth:`accumulate` (``meta``), ``optimizer.step()``, then :meth:`step` (``it``).

    Attributes:
        config: the schedule and thresholds.
        scene_extent: the scene's size (radius), world units: the scale thresholds' unit.
        history: one dict per refinement (``it``, ``cloned``, ``split``, ``pruned``, ``n``,
            ``reset``).
    """

    config: DensityConfig
    scene_extent: float
    grad_sum: Tensor | None = None
    count: Tensor | None = None
    resets: int = 0
    history: list = field(default_factory=list)

    def accumulate(self, meta: dict, n: int | None = None) -> None:
        """Add this iteration's view-space gradient norms (NDC units) of the visible Gaussians.

        ``n``: only the first ``n`` rendered Gaussians are controlled (the rest were rendered
        alongside, fixed)."""
        g = meta["means2d"].grad
        if g is None:
            raise ValueError("meta['means2d'] has no gradient: call meta['means2d'].retain_grad() before backward")
        radii = meta["radii"]
        if n is not None:
            g, radii = g[:, :n], radii[:, :n]
        C = g.shape[0]
        scale = torch.tensor([meta["width"] / 2.0 * C, meta["height"] / 2.0 * C], dtype=g.dtype, device=g.device)
        norms = (g * scale).norm(dim=-1)  # [C, N]
        visible = (radii > 0).all(-1) if radii.ndim == 3 else radii > 0
        N = g.shape[1]
        if self.grad_sum is None or self.grad_sum.shape[0] != N:
            self.grad_sum = torch.zeros(N, dtype=g.dtype, device=g.device)
            self.count = torch.zeros(N, dtype=g.dtype, device=g.device)
        self.grad_sum += (norms * visible).sum(0)
        self.count += visible.sum(0).to(g.dtype)

    def step(self, it: int, params: dict, optimizer, buffers: dict | None = None, generator=None) -> dict | None:
        """At refinement iterations: densify, prune, maybe reset opacities. Returns what it did, or ``None``."""
        cfg = self.config
        missing = [k for k in REQUIRED if k not in params]
        if missing:
            raise ValueError(f"density control needs parameters {list(REQUIRED)}; missing {missing}")
        did = None
        if cfg.refine_start <= it < cfg.refine_stop and it % cfg.refine_every == 0 and self.grad_sum is not None:
            did = self._refine(it, params, optimizer, buffers, generator)
        if it > 0 and it % cfg.reset_every == 0 and it < cfg.refine_stop:
            reset_opacities(params, optimizer, cfg.reset_opacity)
            self.resets += 1
            did = (did or {"it": it, "cloned": 0, "split": 0, "pruned": 0, "n": len(params["means"])}) | {"reset": True}
        if did is not None:
            self.history.append(did)
        return did

    def _refine(self, it, params, optimizer, buffers, generator) -> dict:
        cfg = self.config
        avg = self.grad_sum / self.count.clamp_min(1)
        high = avg > cfg.grad_threshold
        big = params["scales"].detach().exp().amax(-1) > cfg.percent_dense * self.scene_extent
        room = None if cfg.max_gaussians is None else max(0, cfg.max_gaussians - len(avg))
        if room is not None and int(high.sum()) > room:  # the largest gradients first
            keep = torch.zeros_like(high)
            keep[torch.argsort(avg, descending=True)[:room]] = True
            high &= keep
        clone_mask, split_mask = high & ~big, high & big
        n_clone, n_split = int(clone_mask.sum()), int(split_mask.sum())
        duplicate(params, optimizer, clone_mask, buffers)
        split_mask = torch.cat([split_mask, torch.zeros(n_clone, dtype=torch.bool, device=split_mask.device)])
        split(params, optimizer, split_mask, cfg.split_factor, buffers, generator)
        opa = torch.sigmoid(params["opacities"].detach())
        prune = opa < cfg.prune_opacity
        if self.resets > 0:
            prune |= params["scales"].detach().exp().amax(-1) > cfg.prune_scale * self.scene_extent
        n_prune = int(prune.sum())
        if n_prune:
            select(params, optimizer, ~prune, buffers)
        self.grad_sum = self.count = None  # start accumulating afresh for the new set
        return {"it": it, "cloned": n_clone, "split": n_split, "pruned": n_prune, "n": len(params["means"]),
                "reset": False}  # fmt: skip

    def state_dict(self) -> dict:
        return {"grad_sum": self.grad_sum, "count": self.count, "resets": self.resets, "history": list(self.history)}

    def load_state_dict(self, state: dict) -> None:
        self.grad_sum, self.count = state["grad_sum"], state["count"]
        self.resets, self.history = int(state["resets"]), list(state["history"])
