"""SZ-PAB: Synergy Zones with Prioritized Attention Bias, and the implicit-fusion baseline.

Each canonical Gaussian ``i`` asks a query ``q_i = MLP(PE(μ_i))`` and attends over
the frame's tokens ``j`` — audio tokens, one token per AU and a learnable null
token (attending to it means "do nothing")::

    logits_ij = q_i·k_j / √d  +  Σ_z w_iz · B[z, m(j)]  +  P_ij
    f_i       = Σ_j softmax_j(logits_ij) · v_j

- ``w_iz``: soft zone membership of Gaussian ``i`` (``emozone_lite.zones``), rows sum to 1.
- ``B [Z, n_modalities]``: the **prioritized attention bias**, one number per zone and
  token modality (0 = audio, 1 = AU, 2 = null), like ALiBi's additive bias.
  ``B = -inf`` is a hard mask.
- ``P``: optional anatomical prior on the AU tokens — ``[N, M]`` per Gaussian, or a
  zone table ``[Z, M]`` combined as ``Σ_z w_iz P[z, j]`` (``zones.au_anatomical_prior``).

Functions: :func:`sz_pab_attention` (returns the attention weights; readable) and its
fast twin ``sz_pab_attention(..., need_weights=False)`` which hands the same bias to
``torch.nn.functional.scaled_dot_product_attention`` (fused kernels, no ``[.., N, M]``
weights kept for backward on GPU). Modules: :class:`SZPAB` and the baseline
:class:`ImplicitFusion`. They share their sizes (``d_model``, ``d_audio``, ``d_au``,
``n_freqs``, ``hidden``, ``n_au``) and both return ``(fused [B, N, d_model], weights)``;
only SZ-PAB takes zones (``n_zones``, ``bias_mode``, ``bias``, ``au_prior`` and the
``zone_weights`` argument of ``forward``) — the baseline has none to use::

    SZPAB(...)(canon_means, zone_weights, audio_tokens, au_tokens)
    ImplicitFusion(...)(canon_means, audio_tokens, au_tokens)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checks import check_finite, check_shape
from .encoding import encoding_dim, positional_encoding

__all__ = [
    "AUDIO",
    "AU",
    "NULL",
    "MODALITY_NAMES",
    "DEFAULT_BIAS",
    "zone_modality_bias",
    "sz_pab_attention",
    "modality_mass",
    "make_token_modality",
    "SZPAB",
    "ImplicitFusion",
]

#: Token modality ids.
AUDIO, AU, NULL = 0, 1, 2
MODALITY_NAMES: tuple[str, ...] = ("audio", "au", "null")

#: Default bias table ``B [3 zones, 3 modalities]``; rows ``zones.ZONE_NAMES``
#: (upper, lower, synergy), columns :data:`MODALITY_NAMES` (audio, au, null).
#: The upper zone favours AU tokens, the lower zone audio, the synergy zone takes
#: both; the null token is neutral (0). A bias of +2 vs −2 is a factor e⁴ ≈ 55
#: per token.
DEFAULT_BIAS: Tensor = torch.tensor(
    [
        [-3.0, 2.0, 0.0],  # upper:   AU
        [2.0, -2.0, 0.0],  # lower:   audio
        [1.0, 1.0, 0.0],  # synergy: both
    ]
)


# --------------------------------------------------------------------------- checks
def _check_tensor(x, name: str, pattern, hint: str = "", **known: int) -> dict[str, int]:
    """``checks.check_shape`` for arguments that must already be tensors (anything else is named by its type)."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return check_shape(x, name, pattern, hint, **known)


def _check_zone_weights(zone_weights: Tensor, n: int, atol: float = 1e-4) -> None:
    _check_tensor(zone_weights, "zone_weights", ("N", "Z"), "; one row per query", N=n)
    if not zone_weights.is_floating_point():
        raise ValueError(f"zone_weights must be floating point, got {zone_weights.dtype}")
    w = zone_weights.detach()
    check_finite(w, "zone_weights")
    if bool((w < 0).any()):
        raise ValueError("zone_weights must be non-negative (soft memberships, e.g. zones.soft_membership)")
    if n and not torch.allclose(w.sum(1), torch.ones((), dtype=w.dtype, device=w.device).expand(n), atol=atol, rtol=0):
        err = float((w.sum(1) - 1).abs().max())
        raise ValueError(
            f"zone_weights rows must sum to 1 (max deviation {err:.3g}); normalise them or use zones.soft_membership"
        )


def _check_bias_table(bias_table: Tensor, n_zones: int, n_modalities: int | None = None) -> None:
    _check_tensor(bias_table, "bias_table", ("Z", "n_modalities"), "; one row per zone", Z=n_zones)
    if n_modalities is not None and bias_table.shape[1] < n_modalities:
        raise ValueError(
            f"bias_table has {bias_table.shape[1]} modality columns but token_modality uses ids up to {n_modalities - 1}"
        )
    b = bias_table.detach()
    if bool(torch.isnan(b).any()):
        raise ValueError("bias_table contains NaN")
    if bool(torch.isposinf(b).any()):
        raise ValueError("bias_table contains +inf; use a large finite value to favour a modality (-inf masks one)")


def _check_token_modality(token_modality: Tensor, m: int) -> int:
    if not isinstance(token_modality, Tensor) or token_modality.ndim != 1 or token_modality.shape[0] != m:
        raise ValueError(
            f"token_modality must be an integer tensor of shape [M={m}] (one id per key), got {getattr(token_modality, 'shape', None)}"
        )
    if token_modality.is_floating_point() or token_modality.dtype == torch.bool:
        raise ValueError(
            f"token_modality must hold integer modality ids (0 audio, 1 AU, 2 null), got dtype {token_modality.dtype}"
        )
    if m and int(token_modality.min()) < 0:
        raise ValueError(f"token_modality ids must be >= 0, got {int(token_modality.min())}")
    return int(token_modality.max()) + 1 if m else 0


# --------------------------------------------------------------------------- the bias
def zone_modality_bias(zone_weights: Tensor, bias_table: Tensor, token_modality: Tensor) -> Tensor:
    """The zone term ``b_ij = Σ_z w_iz · B[z, m(j)]`` as ``[N, M]``.

    ``-inf`` entries of ``B`` are hard masks: ``b_ij = -inf`` wherever some zone with
    ``w_iz > 0`` has ``B[z, m(j)] = -inf`` (the limit of ``w · B`` as ``B → -inf``;
    ``0 · -inf`` is taken as 0). With soft memberships every zone usually has
    ``w_iz > 0``, so a ``-inf`` then masks the modality for almost every query —
    use a large finite negative (e.g. ``-1e4``) for a soft zone-wise mask, or hard
    (one-hot) memberships.

    Args:
        zone_weights: ``[N, Z]``.
        bias_table: ``[Z, n_modalities]``.
        token_modality: ``[M]`` integer ids.

    Returns:
        ``[N, M]`` in the dtype of ``zone_weights``.
    """
    table = bias_table.to(device=zone_weights.device, dtype=zone_weights.dtype)[
        :, token_modality.to(bias_table.device)
    ]  # [Z, M]
    neg_inf = torch.isneginf(table)
    if bool(neg_inf.any()):
        finite = torch.where(neg_inf, torch.zeros_like(table), table)
        masked = (zone_weights > 0).to(table.dtype) @ neg_inf.to(table.dtype) > 0
        return (zone_weights @ finite).masked_fill(masked, float("-inf"))
    return zone_weights @ table


def _prior_term(au_prior: Tensor, zone_weights: Tensor, token_modality: Tensor, prior_on: str) -> Tensor:
    n, z = zone_weights.shape
    m = token_modality.shape[0]
    if (
        not isinstance(au_prior, Tensor)
        or au_prior.ndim != 2
        or au_prior.shape[1] != m
        or au_prior.shape[0] not in (n, z)
    ):
        raise ValueError(
            f"au_prior must have shape [N={n}, M={m}] (per query) or [Z={z}, M={m}] (per zone), got {getattr(au_prior, 'shape', None)}"
        )
    if prior_on not in ("auto", "query", "zone"):
        raise ValueError(f"prior_on must be 'auto', 'query' or 'zone', got {prior_on!r}")
    p = au_prior.detach()
    if bool(torch.isnan(p).any()) or bool(torch.isposinf(p).any()):
        raise ValueError("au_prior contains NaN or +inf")
    per_zone = prior_on == "zone" or (prior_on == "auto" and au_prior.shape[0] != n)
    if per_zone and au_prior.shape[0] != z:
        raise ValueError(f"prior_on='zone' needs au_prior of shape [Z={z}, M={m}], got {tuple(au_prior.shape)}")
    if prior_on == "query" and au_prior.shape[0] != n:
        raise ValueError(f"prior_on='query' needs au_prior of shape [N={n}, M={m}], got {tuple(au_prior.shape)}")
    is_au = (token_modality == AU).to(zone_weights.device)  # [M]
    prior = torch.where(
        is_au, au_prior.to(zone_weights), torch.zeros((), dtype=zone_weights.dtype, device=zone_weights.device)
    )
    if per_zone:
        return zone_modality_bias(zone_weights, prior, torch.arange(m, device=prior.device))
    return prior


# --------------------------------------------------------------------------- attention
def sz_pab_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    token_modality: Tensor,
    zone_weights: Tensor,
    bias_table: Tensor,
    au_prior: Tensor | None = None,
    mask: Tensor | None = None,
    *,
    scale: float | None = None,
    prior_on: str = "auto",
    need_weights: bool = True,
    validate: bool = True,
) -> tuple[Tensor, Tensor | None]:
    """Attention with the SZ-PAB zone × modality bias.

    ``logits_ij = q_i·k_j · scale + Σ_z w_iz B[z, m(j)] + P_ij (+ mask)``, softmax over
    the ``M`` given tokens ``j``, ``fused_i = Σ_j a_ij v_j``.

    Leading dimensions of ``q``, ``k``, ``v`` (e.g. frames ``B``) broadcast like
    ``torch.matmul``: pass per-Gaussian queries ``[N, d]`` once and keys/values
    ``[B, M, d]`` per frame. ``zone_weights`` is always ``[N, Z]`` (the bias is
    built once, ``[N, M]``, and broadcast — nothing of size ``N × Z × M`` per frame).

    A row whose tokens are all masked (``-inf`` everywhere) gets weights 0 and output
    0 — NaN-free, and no gradient flows through it.

    Args:
        q: ``[..., N, d]`` queries.
        k: ``[..., M, d]`` keys.
        v: ``[..., M, d_v]`` values.
        token_modality: ``[M]`` integer modality id per token (0 audio, 1 AU, 2 null).
        zone_weights: ``[N, Z]`` soft memberships, non-negative, rows sum to 1.
        bias_table: ``[Z, n_modalities]``; ``-inf`` is a hard mask (see
            :func:`zone_modality_bias`), ``+inf`` / NaN are errors.
        au_prior: optional ``[N, M]`` (per query) or ``[Z, M]`` (per zone, combined
            with ``zone_weights``) additive logits; only entries on AU tokens
            (``token_modality == 1``) are used, the rest are ignored.
        mask: optional ``[..., N, M]`` (broadcastable); bool = True where a query may
            attend (``F.scaled_dot_product_attention``'s convention), or float = added.
        scale: logit scale, default ``1/√d``.
        prior_on: ``"auto"`` (``au_prior.shape[0] == N`` → per query, else per zone),
            ``"query"`` or ``"zone"`` — say which when ``N == Z``.
        need_weights: False → the fast path through ``F.scaled_dot_product_attention``;
            returns ``(fused, None)``.
        validate: check shapes and values (set False in a hot loop once checked).

    Returns:
        ``(fused [..., N, d_v], weights [..., N, M])`` (``weights`` None when
        ``need_weights=False``).

    Raises:
        ValueError: wrong shapes, NaN inputs, zone weights that are negative or do
            not sum to 1, a bias table with NaN/+inf or the wrong number of rows.

    Examples:
        >>> q, k, v = torch.randn(5, 8), torch.randn(4, 8), torch.randn(4, 8)
        >>> mod = torch.tensor([0, 0, 1, 2])
        >>> w = torch.full((5, 1), 1.0)
        >>> out, a = sz_pab_attention(q, k, v, mod, w, torch.zeros(1, 3))
        >>> out.shape, a.shape
        (torch.Size([5, 8]), torch.Size([5, 4]))
        >>> ref = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        >>> bool(torch.allclose(out, ref, atol=1e-6))
        True
    """
    if validate:
        for name, t in (("q", q), ("k", k), ("v", v)):
            _check_tensor(t, name, ("*", "L", "d"))
            if not t.is_floating_point():
                raise ValueError(f"{name} must be floating point, got {t.dtype}")
            check_finite(t, name)
        if q.shape[-1] != k.shape[-1]:
            raise ValueError(
                f"q [..., N, d] and k [..., M, d] must share d, got q {tuple(q.shape)} and k {tuple(k.shape)}"
            )
        if k.shape[-2] != v.shape[-2]:
            raise ValueError(
                f"k [..., M, d] and v [..., M, d_v] must share M, got k {tuple(k.shape)} and v {tuple(v.shape)}"
            )
        try:
            torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
        except RuntimeError:
            raise ValueError(
                f"leading (batch) dims of q {tuple(q.shape)}, k {tuple(k.shape)} and v {tuple(v.shape)} do not broadcast"
            ) from None
        n_mod = _check_token_modality(token_modality, k.shape[-2])
        _check_zone_weights(zone_weights, q.shape[-2])
        _check_bias_table(bias_table, zone_weights.shape[1], n_mod)
    zone_weights = zone_weights.to(device=q.device, dtype=q.dtype)
    token_modality = token_modality.to(q.device).long()
    bias = zone_modality_bias(zone_weights, bias_table.to(q.device), token_modality)  # [N, M]
    if au_prior is not None:
        bias = bias + _prior_term(au_prior, zone_weights, token_modality, prior_on)
    if mask is not None:
        if validate and not isinstance(mask, Tensor):
            raise ValueError(f"mask must be a tensor broadcastable to [..., N, M], got {type(mask).__name__}")
        if validate:
            try:
                ok = torch.broadcast_shapes(mask.shape, bias.shape)[-2:] == (q.shape[-2], k.shape[-2])
            except RuntimeError:
                ok = False
            if not ok:
                raise ValueError(
                    f"mask must broadcast to [..., N={q.shape[-2]}, M={k.shape[-2]}], got {tuple(mask.shape)}"
                )
        mask = mask.to(q.device)
        if mask.dtype == torch.bool:
            bias = bias.masked_fill(~mask, float("-inf"))
        else:
            if validate and (bool(torch.isnan(mask).any()) or bool(torch.isposinf(mask).any())):
                raise ValueError("float mask contains NaN or +inf")
            bias = bias + mask.to(q.dtype)
    dead = torch.isneginf(bias).all(dim=-1, keepdim=True)  # rows with nothing to attend to
    has_dead = bool(dead.any())
    if has_dead:
        bias = bias.masked_fill(dead, 0.0)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)

    if not need_weights:
        batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2], bias.shape[:-2])
        q, k, v = (t.expand(*batch, *t.shape[-2:]) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=scale)
        if has_dead:
            out = out.masked_fill(dead, 0.0)
        return out, None

    logits = torch.matmul(q, k.transpose(-1, -2)) * scale + bias  # [..., N, M]
    weights = torch.softmax(logits, dim=-1)
    if has_dead:
        weights = weights.masked_fill(dead, 0.0)
    return torch.matmul(weights, v), weights


def make_token_modality(n_audio: int, n_au: int = 17, null: bool = True, device=None) -> Tensor:
    """Token modality ids ``[n_audio + n_au + null]``: audio tokens, then AU tokens, then null.

    Examples:
        >>> make_token_modality(2, 3).tolist()
        [0, 0, 1, 1, 1, 2]
    """
    if n_audio < 0 or n_au < 0:
        raise ValueError(f"n_audio and n_au must be >= 0, got {n_audio}, {n_au}")
    parts = [torch.full((n_audio,), AUDIO), torch.full((n_au,), AU)] + ([torch.full((1,), NULL)] if null else [])
    return torch.cat(parts).long().to(device)


def modality_mass(weights: Tensor, token_modality: Tensor, n_modalities: int = len(MODALITY_NAMES)) -> Tensor:
    """Attention mass per modality: ``[..., N, M]`` weights → ``[..., N, n_modalities]``.

    ``mass[..., i, m] = Σ_{j: m(j) = m} weights[..., i, j]`` (audio, AU, null by default).

    Examples:
        >>> a = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
        >>> modality_mass(a, torch.tensor([0, 0, 1, 2])).tolist()
        [[0.30000001192092896, 0.30000001192092896, 0.4000000059604645]]
    """
    _check_tensor(weights, "weights", ("*", "N", "M"))
    n_mod = _check_token_modality(token_modality, weights.shape[-1])
    if n_mod > n_modalities:
        raise ValueError(f"token_modality uses ids up to {n_mod - 1} but n_modalities={n_modalities}")
    onehot = F.one_hot(token_modality.long().to(weights.device), n_modalities).to(weights.dtype)  # [M, n_mod]
    return weights @ onehot


# --------------------------------------------------------------------------- modules
def _mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(d_in, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, d_out)
    )


def _check_sizes(n_freqs, **sizes) -> None:
    """Constructor sizes of the fusion modules: each ``>= 1``, ``n_freqs >= 0``."""
    for name, val in sizes.items():
        if int(val) < 1:
            raise ValueError(f"{name} must be >= 1, got {val}")
    if int(n_freqs) < 0:
        raise ValueError(f"n_freqs must be >= 0, got {n_freqs}")


def _check_token_inputs(mod: nn.Module, canon_means, audio_tokens, au_tokens) -> int:
    """Check the inputs both fusion modules take; returns ``N``."""
    n = _check_tensor(canon_means, "canon_means", ("N", 3))["N"]
    _check_tensor(audio_tokens, "audio_tokens", ("B", "n_a", "d_audio"), d_audio=mod.d_audio)
    _check_tensor(au_tokens, "au_tokens", ("B", mod.n_au, "d_au"), d_au=mod.d_au)
    if audio_tokens.shape[0] != au_tokens.shape[0]:
        raise ValueError(
            f"audio_tokens and au_tokens must share the batch size B, got {audio_tokens.shape[0]} and {au_tokens.shape[0]}"
        )
    if audio_tokens.shape[1] < 1:
        raise ValueError("audio_tokens has no tokens (n_a = 0); give at least one")
    for name, t in (("canon_means", canon_means), ("audio_tokens", audio_tokens), ("au_tokens", au_tokens)):
        check_finite(t, name)
    return n


class SZPAB(nn.Module):
    """SZ-PAB fusion: per-Gaussian queries attend over audio, AU and null tokens.

    ``q_i = MLP(PE(μ_i))``; keys/values are linear projections of the audio tokens
    and the AU tokens (each AU token also gets a learned AU-identity embedding, since
    a channel-independent encoder gives tokens that do not know which AU they are),
    plus one learnable null token (its value starts at zero: attending to it
    contributes nothing). All tokens get a learned modality embedding on the key.

    Args:
        d_model: query/key/value width ``d``.
        n_zones: ``Z`` (columns of ``zone_weights``).
        d_audio: width of an audio token.
        d_au: width of an AU token.
        n_freqs: positional-encoding frequencies for ``μ``.
        hidden: width of the query MLP.
        n_au: number of AU tokens (17).
        bias_mode: ``"fixed"`` (a buffer; change it with :meth:`set_bias`) or
            ``"learnable"`` (an ``nn.Parameter`` initialised from ``bias``).
        bias: initial table ``[n_zones, 3]``; default :data:`DEFAULT_BIAS` for 3 zones,
            zeros otherwise.
        au_prior: None, ``"anatomical"`` (``zones.au_anatomical_prior()``, needs 3 zones)
            or a tensor ``[n_zones, n_au]`` added to the AU-token logits per zone.

    Shapes:
        ``forward(canon_means [N, 3], zone_weights [N, Z], audio_tokens [B, n_a, d_audio],
        au_tokens [B, n_au, d_au]) -> (fused [B, N, d_model], weights [B, N, M])``
        with ``M = n_a + n_au + 1`` tokens ordered audio, AU, null
        (:meth:`token_modality`).

    Examples:
        >>> m = SZPAB(d_model=16, d_audio=8, d_au=4)
        >>> w = torch.full((100, 3), 1 / 3)
        >>> f, a = m(torch.randn(100, 3), w, torch.randn(2, 5, 8), torch.randn(2, 17, 4))
        >>> f.shape, a.shape
        (torch.Size([2, 100, 16]), torch.Size([2, 100, 23]))
    """

    def __init__(
        self,
        d_model: int = 32,
        n_zones: int = 3,
        d_audio: int = 32,
        d_au: int = 32,
        n_freqs: int = 6,
        hidden: int = 64,
        n_au: int = 17,
        bias_mode: str = "fixed",
        bias: Tensor | None = None,
        au_prior: str | Tensor | None = None,
    ) -> None:
        super().__init__()
        _check_sizes(n_freqs, d_model=d_model, n_zones=n_zones, d_audio=d_audio, d_au=d_au, hidden=hidden, n_au=n_au)
        if bias_mode not in ("fixed", "learnable"):
            raise ValueError(f"bias_mode must be 'fixed' or 'learnable', got {bias_mode!r}")
        self.d_model, self.n_zones, self.d_audio, self.d_au = int(d_model), int(n_zones), int(d_audio), int(d_au)
        self.n_freqs, self.n_au, self.bias_mode = int(n_freqs), int(n_au), bias_mode
        self.query = _mlp(encoding_dim(3, self.n_freqs), int(hidden), self.d_model)
        self.audio_k, self.audio_v = nn.Linear(self.d_audio, self.d_model), nn.Linear(self.d_audio, self.d_model)
        self.au_k, self.au_v = nn.Linear(self.d_au, self.d_model), nn.Linear(self.d_au, self.d_model)
        self.au_id = nn.Parameter(0.02 * torch.randn(self.n_au, self.d_model))
        self.modality_emb = nn.Parameter(0.02 * torch.randn(len(MODALITY_NAMES), self.d_model))
        self.null_k = nn.Parameter(0.02 * torch.randn(self.d_model))
        self.null_v = nn.Parameter(torch.zeros(self.d_model))

        if bias is None:
            bias = (
                DEFAULT_BIAS.clone()
                if self.n_zones == DEFAULT_BIAS.shape[0]
                else torch.zeros(self.n_zones, len(MODALITY_NAMES))
            )
        bias = self._checked_table(bias)
        if bias_mode == "learnable":
            self.bias_table = nn.Parameter(bias)
        else:
            self.register_buffer("bias_table", bias)

        if isinstance(au_prior, str):
            if au_prior != "anatomical":
                raise ValueError(f"au_prior must be None, 'anatomical' or a [n_zones, n_au] tensor, got {au_prior!r}")
            if self.n_zones != 3 or self.n_au != 17:
                raise ValueError(
                    "au_prior='anatomical' needs the 3 coarse zones and 17 AUs; pass a [n_zones, n_au] tensor instead"
                )
            from .zones import au_anatomical_prior

            au_prior = au_anatomical_prior()
        if au_prior is not None:
            au_prior = torch.as_tensor(au_prior, dtype=torch.float32)
            check_shape(au_prior, "au_prior", ("n_zones", "n_au"), n_zones=self.n_zones, n_au=self.n_au)
            if bool(torch.isnan(au_prior).any()) or bool(torch.isposinf(au_prior).any()):
                raise ValueError("au_prior contains NaN or +inf")
        self.register_buffer("au_prior", au_prior)

    def _checked_table(self, table) -> Tensor:
        t = torch.as_tensor(table, dtype=torch.float32).clone()
        n_cols = len(MODALITY_NAMES)
        check_shape(t, "bias table", ("n_zones", n_cols), "; columns audio, au, null", n_zones=self.n_zones)
        _check_bias_table(t, self.n_zones, len(MODALITY_NAMES))
        return t

    @torch.no_grad()
    def set_bias(self, table) -> None:
        """Overwrite the bias table in place (e.g. from sliders); works in both modes."""
        t = self._checked_table(table)
        self.bias_table.copy_(t.to(self.bias_table))

    def token_modality(self, n_audio: int) -> Tensor:
        """``[n_audio + n_au + 1]`` modality ids of the tokens, on the module's device."""
        return make_token_modality(n_audio, self.n_au, null=True, device=self.null_k.device)

    def queries(self, canon_means: Tensor) -> Tensor:
        """``q [N, d_model] = MLP(PE(μ))``."""
        return self.query(positional_encoding(canon_means, self.n_freqs))

    def tokens(self, audio_tokens: Tensor, au_tokens: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values ``[B, M, d_model]`` of audio, AU and null tokens."""
        b = audio_tokens.shape[0]
        emb = self.modality_emb
        ka = self.audio_k(audio_tokens) + emb[AUDIO]
        ku = self.au_k(au_tokens) + self.au_id + emb[AU]
        kn = (self.null_k + emb[NULL]).expand(b, 1, self.d_model)
        va = self.audio_v(audio_tokens)
        vu = self.au_v(au_tokens) + self.au_id
        vn = self.null_v.expand(b, 1, self.d_model)
        return torch.cat([ka, ku, kn], dim=1), torch.cat([va, vu, vn], dim=1)

    def forward(
        self, canon_means: Tensor, zone_weights: Tensor, audio_tokens: Tensor, au_tokens: Tensor
    ) -> tuple[Tensor, Tensor]:
        n = _check_token_inputs(self, canon_means, audio_tokens, au_tokens)
        _check_tensor(zone_weights, "zone_weights", ("N", "n_zones"), N=n, n_zones=self.n_zones)
        _check_zone_weights(zone_weights, n)
        n_a = audio_tokens.shape[1]
        q = self.queries(canon_means)  # [N, d]: shared by all frames
        k, v = self.tokens(audio_tokens, au_tokens)
        modality = self.token_modality(n_a)
        prior = None
        if self.au_prior is not None:
            prior = torch.zeros(self.n_zones, modality.shape[0], device=q.device, dtype=q.dtype)
            prior[:, n_a : n_a + self.n_au] = self.au_prior.to(q)
        fused, weights = sz_pab_attention(
            q, k, v, modality, zone_weights.to(q), self.bias_table, prior, prior_on="zone", validate=False
        )
        return fused, weights

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, n_zones={self.n_zones}, bias_mode={self.bias_mode!r}, au_prior={self.au_prior is not None}"


class ImplicitFusion(nn.Module):
    """The baseline: concatenate pooled audio, all AU features and ``PE(μ)`` → one MLP.

    ``f_i = MLP([mean_j audio_j, flatten(AU tokens), PE(μ_i)])`` — no zones, no
    attention, so audio and AU features are entangled in every Gaussian. The sizes
    are :class:`SZPAB`'s (keyword-only after ``d_model``); it takes none of SZ-PAB's
    zone arguments (``n_zones``, ``bias_mode``, ``bias``, ``au_prior``, and
    ``zone_weights`` in ``forward``): passing one is a ``TypeError``. ``forward``
    returns ``weights=None``: there is no routing to inspect.

    Args:
        d_model: output feature width.
        d_audio: width of an audio token.
        d_au: width of an AU token.
        n_freqs: positional-encoding frequencies for ``μ``.
        hidden: width of the MLP.
        n_au: number of AU tokens (17).

    Shapes:
        ``forward(canon_means [N, 3], audio_tokens [B, n_a, d_audio], au_tokens
        [B, n_au, d_au]) -> (fused [B, N, d_model], None)``.

    Examples:
        >>> m = ImplicitFusion(d_model=16, d_audio=8, d_au=4)
        >>> f, a = m(torch.randn(100, 3), torch.randn(2, 5, 8), torch.randn(2, 17, 4))
        >>> f.shape, a is None
        (torch.Size([2, 100, 16]), True)
    """

    def __init__(
        self,
        d_model: int = 32,
        *,
        d_audio: int = 32,
        d_au: int = 32,
        n_freqs: int = 6,
        hidden: int = 64,
        n_au: int = 17,
    ) -> None:
        super().__init__()
        _check_sizes(n_freqs, d_model=d_model, d_audio=d_audio, d_au=d_au, hidden=hidden, n_au=n_au)
        self.d_model, self.d_audio, self.d_au = int(d_model), int(d_audio), int(d_au)
        self.n_freqs, self.n_au = int(n_freqs), int(n_au)
        # First layer split: W·[cond, PE(μ)] + b = W_c·cond + (W_p·PE(μ) + b) — no [B, N, ·] concat.
        self.in_cond = nn.Linear(self.d_audio + self.n_au * self.d_au, int(hidden), bias=False)
        self.in_pos = nn.Linear(encoding_dim(3, self.n_freqs), int(hidden))
        self.trunk = nn.Sequential(
            nn.SiLU(), nn.Linear(int(hidden), int(hidden)), nn.SiLU(), nn.Linear(int(hidden), self.d_model)
        )

    def forward(self, canon_means: Tensor, audio_tokens: Tensor, au_tokens: Tensor) -> tuple[Tensor, None]:
        _check_token_inputs(self, canon_means, audio_tokens, au_tokens)
        cond = torch.cat([audio_tokens.mean(dim=1), au_tokens.flatten(1)], dim=-1)  # [B, d_a + 17·d_u]
        h = self.in_cond(cond)[:, None, :] + self.in_pos(positional_encoding(canon_means, self.n_freqs))[None]
        return self.trunk(h), None
