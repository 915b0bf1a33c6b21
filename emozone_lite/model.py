"""EmoZone-lite: audio + AU track → deformed 3D Gaussian head → images.

The whole data flow of docs/design.md in one ``nn.Module``::

    mel windows ─► AudioEncoder ─► audio tokens A_t [n_a, d]
    AU track    ─► CITAE / PerFrameAUEncoder ─► AU tokens U_t [17, d]
    canonical Gaussians μ_i ─► zones.soft_membership ─► w_i [Z]
    SZPAB(μ, w, A_t, U_t) / ImplicitFusion(μ, A_t, U_t) ─► f_i [d]   (EmoZoneLite.fuse)
    DeformationField(f_i, μ_i) ─► (Δμ, Δq, Δs) ─► render.rasterize ─► image

``ModelConfig(fusion="implicit", temporal="per_frame")`` gives the baselines of the
ablation; everything else (sizes, seed, data) stays the same.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import SZPAB, ImplicitFusion, modality_mass
from .aus import N_AUS
from .checks import check_finite, check_known_fields, check_shape
from .deform import DeformationField, apply_deformation
from .gaussians import GaussianCloud
from .geometry import normalize_quat
from .head.parts import follows_mesh
from .landmarks import load_canonical_mesh
from .temporal import CITAE, PerFrameAUEncoder
from .zones import cloud_membership

# N_AUS (imported above) is emozone_lite.aus.N_AUS, re-exported: model.N_AUS keeps working.


@dataclass
class ModelConfig:
    """Everything that defines an EmoZone-lite network (saved in every checkpoint).

    Attributes:
        fusion: ``"szpab"`` (zones + prioritized attention bias), ``"implicit"``
            (concatenate audio and AU features → MLP; the paper's implicit-fusion
            baseline) or ``"attention"`` (the same attention with one zone and
            B = P = 0: routing learned with no spatial prior).
        temporal: ``"citae"`` (channel-independent temporal AU encoder) or
            ``"per_frame"`` (per-frame MLP over the 17 AU values; the baseline).
        d_model: token / feature width ``d``.
        n_mels: mel bands of the audio windows (``audio.N_MELS``).
        audio_context: audio tokens per frame: the smoothed features of frames
            ``t - audio_context // 2 … t + audio_context // 2``.
        au_window, patch_len, patch_stride: CIT-AE windowing.
        pe_freqs: positional-encoding frequencies of the canonical centres.
        hidden: width of the hidden layers (queries, deformation MLP).
        bias_mode: SZ-PAB bias table ``"learnable"`` (initialised from the prior) or ``"fixed"``.
        au_prior: add the FACS anatomical per-AU prior ``P`` to the SZ-PAB logits.
        zone_falloff: temperature of the soft zone membership (world units).
        n_gaussians: Gaussians of the head used (``None`` = all 16,634; 10,000 measured no better
            on pixels at 300 steps and 40 % slower per step).
        subset: how they are chosen: ``"mouth"`` (default, :func:`mouth_first_subset`: the mouth
            at full density, the rest evenly spread with scales enlarged to cover the same
            surface) or ``"even"`` (an evenly spread subset of everything, as before).
        audio_frontend: ``"phones"`` (default: 16-step windows of phones recognised by PocketSphinx,
            :func:`emozone_lite.phonetic.phonetic_features`; speaker-independent) or ``"mel"``
            (16-step log-mel windows, :func:`emozone_lite.audio.features`). The same
            :class:`AudioEncoder` reads either (``n_mels`` is ignored for phones). Phones are the
            default because they follow real speech after training on synthetic speech
            (``benchmarks/lip_sync.py``); log-mel does not.
        au_level: CIT-AE's level embedding (how strong each AU is, added to its token):
            ``"shared"`` (one for all AUs, so every AU's intensity moves its token along the same
            direction) or ``"per_au"`` (one per AU; channel independence holds either way). In
            ``benchmarks/au_path.py`` (AU → vertex loss only, 2 cores) ``"per_au"`` made CIT-AE
            follow the presets 0.03 / 0.21 / 0.37 of the teacher's motion after 300 / 600 / 900
            steps against 0.02 / 0.17 / 0.24 shared (model version 8; per-frame encoder 0.16 at
            300 steps; with model versions 6–7 per AU read 0.12 / 0.30 / 0.57). In full
            training (model version 8, 1000 steps, seed 0, detector AUs,
            ``benchmarks/expression_control.py``) the presets moved the detector's reading of the
            intended AUs by 0.42 with ``"per_au"`` against 0.06 shared (the target is 1.0); at 3000
            steps by 1.19 against 0.41 (target met), but that ``"per_au"`` run opened the mouth on
            new speech to only 0.51–0.59 of the teacher's range on pixels; with the detector's
            speech AUs set to 0 on half the speech clips (``TrainConfig.speech_au_dropout=0.5``) it
            met every lip-sync target and read 0.96 (seed 1: 0.39; README, "Training length is the lever …").
        face_motion: how the face-surface Gaussians move: ``"carried"`` (default: the field's
            offsets are read out onto the mesh vertices, :meth:`EmoZoneLite.vertex_displacement`,
            and carried back to every face Gaussian through its triangle, so the rendered skin
            follows exactly the mesh the landmark losses supervise) or ``"free"`` (each Gaussian
            keeps its own offset, as before; only their average per vertex is supervised, and the
            lips' Gaussians drifted apart). Rotations and scales come from the field either way;
            the mouth interior and eyes move as ``interior_motion`` says.
        interior_motion: how the mouth interior (teeth, tongue, cavity) and the eyes move:
            ``"rigid"`` (default: as the head's anatomy does, :func:`emozone_lite.head.carry_parts`:
            the upper teeth, cavity roof and back wall and the eyes stay with the skull; the lower
            teeth, tongue and cavity floor ride on the jaw, whose opening is read from the mesh,
            :meth:`EmoZoneLite.jaw_opening`) or ``"free"`` (the field gives every one of them its
            own offset, rotation and scale, as before). With ``"free"`` the trained student
            scattered its teeth over the opening (measured with model version 7, 300 steps, full
            augmentation, three frames of a0009: the interior Gaussians moved 7.5 mm on average,
            the face's 2.7 mm), so an open mouth showed speckles of tooth colour instead of a dark
            cavity.
    """

    fusion: Literal["szpab", "implicit", "attention"] = "szpab"
    temporal: Literal["citae", "per_frame"] = "citae"
    d_model: int = 32
    n_mels: int = 80
    audio_context: int = 5
    au_window: int = 32
    patch_len: int = 8
    patch_stride: int = 4
    pe_freqs: int = 6
    hidden: int = 64
    bias_mode: Literal["learnable", "fixed"] = "learnable"
    au_prior: bool = True
    zone_falloff: float = 0.06
    n_gaussians: int | None = 6000
    audio_frontend: Literal["mel", "phones"] = "phones"
    subset: Literal["mouth", "even"] = "mouth"
    au_level: Literal["shared", "per_au"] = "shared"
    face_motion: Literal["carried", "free"] = "carried"
    interior_motion: Literal["rigid", "free"] = "rigid"

    def __post_init__(self) -> None:
        if self.interior_motion not in ("rigid", "free"):
            raise ValueError(f"interior_motion must be 'rigid' or 'free', got {self.interior_motion!r}")
        if self.face_motion not in ("carried", "free"):
            raise ValueError(f"face_motion must be 'carried' or 'free', got {self.face_motion!r}")
        if self.audio_frontend not in ("mel", "phones"):
            raise ValueError(f"audio_frontend must be 'mel' or 'phones', got {self.audio_frontend!r}")
        if self.subset not in ("mouth", "even"):
            raise ValueError(f"subset must be 'mouth' or 'even', got {self.subset!r}")
        if self.fusion not in ("szpab", "implicit", "attention"):
            raise ValueError(f"fusion must be 'szpab', 'implicit' or 'attention', got {self.fusion!r}")
        if self.au_level not in ("shared", "per_au"):
            raise ValueError(f"au_level must be 'shared' or 'per_au', got {self.au_level!r}")
        if self.temporal not in ("citae", "per_frame"):
            raise ValueError(f"temporal must be 'citae' or 'per_frame', got {self.temporal!r}")
        if self.audio_context < 1 or self.audio_context % 2 == 0:
            raise ValueError(f"audio_context must be a positive odd number, got {self.audio_context}")
        if self.d_model < 4 or self.d_model % 4:
            raise ValueError(f"d_model must be a positive multiple of 4, got {self.d_model}")

    @property
    def name(self) -> str:
        """Short run name, e.g. ``"szpab+citae"``."""
        return f"{self.fusion}+{self.temporal}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        check_known_fields(cls, d)
        return cls(**d)


class AudioEncoder(nn.Module):
    """Per-frame mel windows → audio tokens.

    A small 1D conv net over the 16 mel steps of each frame's window (plus the frame
    energy) gives one feature per video frame; a depthwise conv over neighbouring
    frames smooths it in time; the tokens of frame ``t`` are the smoothed features of
    frames ``t-k … t+k`` (edge-clamped) plus a learned offset embedding.

    Shapes:
        ``forward(mel_windows [T, 16, n_mels], energy [T], frames [F] = None) -> [T or F, context, d]``
    """

    def __init__(
        self, n_mels: int = 80, d_model: int = 32, context: int = 5, hidden: int = 64, normalize: bool = True
    ) -> None:
        super().__init__()
        self.n_mels, self.d_model, self.context = int(n_mels), int(d_model), int(context)
        self.normalize = bool(normalize)  # per-window standardisation (log-mel); off for phone windows
        self.conv = nn.Sequential(
            nn.Conv1d(n_mels, hidden, 3, padding=1),
            nn.GELU(),
            nn.Conv1d(hidden, hidden, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv1d(hidden, d_model, 3, stride=2, padding=1),
            nn.GELU(),
        )
        self.energy = nn.Linear(1, d_model)
        self.smooth = nn.Conv1d(d_model, d_model, 5, padding=0, groups=d_model, bias=False)  # edge-replicated below
        with torch.no_grad():  # start as a moving average over 5 frames
            self.smooth.weight.fill_(0.2)
        self.offset_emb = nn.Parameter(0.02 * torch.randn(context, d_model))

    def _check(self, mel_windows: Tensor, energy: Tensor) -> None:
        if mel_windows.ndim != 3 or mel_windows.shape[-1] != self.n_mels:
            raise ValueError(f"mel_windows must have shape [T, 16, {self.n_mels}], got {tuple(mel_windows.shape)}")
        check_shape(energy, "energy", ("T",), T=mel_windows.shape[0])

    def window_features(self, mel_windows: Tensor, energy: Tensor) -> Tensor:
        """``[F, 16, n_mels], [F] -> [F, d]``: one feature per frame from its own window (not smoothed)."""
        # per-window normalisation: loudness-invariant and local (frame t sees only its window)
        x = mel_windows
        if self.normalize:
            mu = mel_windows.mean(dim=(1, 2), keepdim=True)
            x = (mel_windows - mu) / (mel_windows.std(dim=(1, 2), keepdim=True) + 1e-3)
        return self.conv(x.transpose(1, 2)).mean(-1) + self.energy(energy[:, None])

    def frame_features(self, mel_windows: Tensor, energy: Tensor) -> Tensor:
        """``[T, 16, n_mels], [T] -> [T, d]`` smoothed per-frame features."""
        self._check(mel_windows, energy)
        h = F.pad(self.window_features(mel_windows, energy).T[None], (2, 2), mode="replicate")
        return self.smooth(h)[0].T  # [T, d]

    def forward(self, mel_windows: Tensor, energy: Tensor, frames: Tensor | None = None) -> Tensor:
        """Tokens ``[T, context, d]``; with ``frames`` (``[F]`` indices) those frames' only,
        ``[F, context, d]``, computed from the windows they read (frames ``t ± (context//2 + 2)``):
        the same values at a fraction of the cost for a few frames of a long clip."""
        self._check(mel_windows, energy)
        T, k = mel_windows.shape[0], self.context // 2
        dev = mel_windows.device
        if frames is None:
            h = self.frame_features(mel_windows, energy)
            idx = (torch.arange(T, device=dev)[:, None] + torch.arange(-k, k + 1, device=dev)).clamp(0, T - 1)
            return h[idx] + self.offset_emb  # [T, context, d]
        frames = torch.as_tensor(frames, device=dev).long().reshape(-1)
        ctx = (frames[:, None] + torch.arange(-k, k + 1, device=dev)).clamp(0, T - 1)  # [F, n_a]
        # the smoothing conv over the edge-replicated features: taps at u-2 … u+2, clamped
        src = (ctx[..., None] + torch.arange(-2, 3, device=dev)).clamp(0, T - 1)  # [F, n_a, 5]
        need, pos = torch.unique(src, return_inverse=True)
        g = self.window_features(mel_windows[need], energy[need])[pos]  # [F, n_a, 5, d]
        return torch.einsum("fatd,dt->fad", g, self.smooth.weight[:, 0]) + self.offset_emb


def evenly_spread_subset(n_total: int, n: int | None) -> Tensor:
    """Indices of an evenly spread subset of ``n`` out of ``n_total`` Gaussians."""
    if n is None or n >= n_total:
        return torch.arange(n_total)
    return torch.linspace(0, n_total - 1, n).round().long()


#: Radius (world units; the lips are 0.49 wide) around the lip landmarks within which
#: :func:`mouth_first_subset` keeps every face Gaussian.
MOUTH_RADIUS = 0.15
#: Largest share of a subset the mouth may take (the rest of the face needs the others).
MOUTH_SHARE = 0.6


def mouth_first_subset(head, n: int | None) -> tuple[Tensor, Tensor]:
    """``n`` Gaussians of ``head`` with the mouth at full density, and their scale factors.

    The *mouth* is every Gaussian of the mouth interior (teeth, tongue, cavity) and every face
    Gaussian within :data:`MOUTH_RADIUS` of the lips (5,535 of the bundled head's 16,634); it
    takes up to :data:`MOUTH_SHARE` of ``n`` and the rest of the head the others, each group
    evenly spread. A group kept at a fraction ``f`` of its Gaussians gets scales ``× f^-1/2`` so
    it still covers its surface (density ∝ 1 / scale²). Why: with an even 6,000-of-16,634 subset
    the trained student grew its face Gaussians by e^0.51 ≈ 1.67× (measured, almost constant
    over frames) to close the holes, which smeared the lips over the mouth: the rendered mouth
    never showed its cavity although the mesh opened it.

    Returns:
        ``idx [n]`` (ascending) and ``scale_factor [n]``.
    """
    from .head.parts import EYES, FACE, parts_of
    from .landmarks import LANDMARK_GROUPS

    N = len(head)
    if n is None or n >= N:
        return torch.arange(N), torch.ones(N)
    part = parts_of(head)
    lip_ids = sorted({i for g in ("upper_lip_outer", "upper_lip_inner", "lower_lip_inner", "lower_lip_outer",
                                  "lip_corners") for i in LANDMARK_GROUPS[g]})  # fmt: skip
    lips = torch.as_tensor(load_canonical_mesh().vertices, dtype=torch.float32)[lip_ids]
    near = torch.cdist(head.means.detach().float(), lips).min(1).values < MOUTH_RADIUS
    mouth = ((part != FACE) & (part != EYES)) | (near & (part == FACE))
    groups = [torch.nonzero(mouth).squeeze(1), torch.nonzero(~mouth).squeeze(1)]
    k_mouth = min(len(groups[0]), round(MOUTH_SHARE * n))
    keep, factors = [], []
    for g, k in zip(groups, (k_mouth, n - k_mouth)):
        k = min(k, len(g))
        sel = g[evenly_spread_subset(len(g), k)] if k > 0 else g[:0]
        keep.append(sel)
        factors.append(torch.full((len(sel),), (len(g) / max(k, 1)) ** 0.5))
    idx, fac = torch.cat(keep), torch.cat(factors)
    order = torch.argsort(idx)
    return idx[order], fac[order]


def vertex_readout_matrix(tri_index: Tensor, bary: Tensor, triangles: Tensor, n_vertices: int) -> Tensor:
    """Dense ``[V, N]`` matrix turning per-Gaussian displacements into per-vertex ones.

    The inverse of :func:`emozone_lite.head.carry_vertex_displacements`: each vertex
    averages the displacements of the Gaussians on its triangles, weighted by the
    barycentric weight the Gaussian gives that vertex. Vertices no Gaussian touches
    get a zero row.
    """
    tri_index = tri_index.long()
    verts = triangles.long()[tri_index]  # [N, 3]
    n = tri_index.shape[0]
    A = torch.zeros(n_vertices, n)
    cols = torch.arange(n)[:, None].expand(n, 3)
    A.index_put_((verts.reshape(-1), cols.reshape(-1)), bary.float().reshape(-1), accumulate=True)
    return A / A.sum(1, keepdim=True).clamp_min(1e-8)


@dataclass
class HeadState:
    """Deformed Gaussians of ``B`` frames: ``means [B, N, 3]``, ``quats [B, N, 4]``,
    ``scales [B, N, 3]``, ``vertices [B, 468, 3]`` (read out from the Gaussians) and
    the SZ-PAB attention ``weights [B, N, M]`` (``None`` for implicit fusion)."""

    means: Tensor
    quats: Tensor
    scales: Tensor
    vertices: Tensor
    weights: Tensor | None


@lru_cache(maxsize=1)
def _canonical_jaw_field() -> Tensor:
    """``[468, 3]`` the jaw drop at full opening on the canonical mesh
    (:func:`emozone_lite.teacher.rig.jaw_field`: the head's mandible and hinge, not a learned part;
    computed once per process, 0.4 s)."""
    from .teacher.rig import jaw_field

    return torch.as_tensor(jaw_field(load_canonical_mesh()), dtype=torch.float32)


def _jaw_probe(fjaw: Tensor) -> Tensor:
    """``[468, 3]`` weights ``P`` with ``J = Σ P · ΔV`` the least-squares multiple of the jaw
    field ``fjaw`` on the vertices it moves most (≥ half its largest), less the lips' landmarks."""
    from .landmarks import LANDMARK_GROUPS

    mag = fjaw.norm(dim=1)
    sel = mag >= 0.5 * mag.max()
    for name, ids in LANDMARK_GROUPS.items():
        if "lip" in name:
            sel[torch.as_tensor(ids).long()] = False
    probe = fjaw * sel[:, None].float()
    return probe / (probe * probe).sum()


class EmoZoneLite(nn.Module):
    """The EmoZone-lite talking head (see the module docstring for the data flow).

    Args:
        config: a :class:`ModelConfig`.
        head: the canonical Gaussian head (``head.load_head()``) with ``tri_index`` and
            ``bary`` extras.

    Examples:
        >>> from emozone_lite.head import load_head
        >>> m = EmoZoneLite(ModelConfig(n_gaussians=500), load_head())
        >>> a, u = m.encode(torch.randn(10, 16, 80), torch.rand(10), torch.rand(10, 17))
        >>> s = m.deform(a[:2], u[:2])
        >>> s.means.shape, s.vertices.shape
        (torch.Size([2, 500, 3]), torch.Size([2, 468, 3]))
    """

    def __init__(self, config: ModelConfig, head: GaussianCloud) -> None:
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise ValueError(f"config must be a ModelConfig, got {type(config).__name__}")
        for key in ("tri_index", "bary"):
            if key not in head.extras:
                raise ValueError(f"head has no {key!r} extra; load it with emozone_lite.head.load_head()")
        self.config = config
        c = config
        if c.subset == "mouth":
            idx, scale_factor = mouth_first_subset(head, c.n_gaussians)
        else:
            idx = evenly_spread_subset(len(head), c.n_gaussians)
            scale_factor = torch.ones(len(idx))
        sub = head.subset(idx)
        self.register_buffer("means", sub.means.float().contiguous())
        self.register_buffer("quats", normalize_quat(sub.quats.float()).contiguous())
        self.register_buffer("scales", (sub.scales.float() * scale_factor[:, None]).contiguous())
        self.register_buffer("opacities", sub.opacities.float().contiguous())
        self.register_buffer("colors", sub.colors.float().clamp(0, 1).contiguous())
        mesh = load_canonical_mesh()
        self.register_buffer("rest_vertices", torch.as_tensor(mesh.vertices, dtype=torch.float32))
        # vertex readout (the inverse of the barycentric carry) as a sparse scatter:
        # vertex v = Σ_i bary_iv · Δμ_i / Σ_i bary_iv over the Gaussians on v's triangles
        tri_verts = torch.as_tensor(mesh.triangles).long()[sub.extras["tri_index"].long()]  # [N, 3]
        # only the face surface follows the mesh; teeth, tongue, cavity and eyeballs are attached to a
        # triangle for their zone but must not pull the vertices read back from the Gaussians
        bary = sub.extras["bary"].float() * follows_mesh(sub).float()[:, None]
        wsum = torch.zeros(len(mesh.vertices)).index_add_(0, tri_verts.reshape(-1), bary.reshape(-1))
        self.register_buffer("readout_verts", tri_verts.reshape(-1).contiguous())
        self.register_buffer("readout_weights", (bary / wsum[tri_verts].clamp_min(1e-8)).reshape(-1).contiguous())
        # face_motion="carried": the face Gaussians, their triangles' vertices and barycentrics (derived
        # from the head, so not saved in checkpoints)
        on_face = follows_mesh(sub)
        self.register_buffer("carry_idx", torch.nonzero(on_face).squeeze(1), persistent=False)
        self.register_buffer("carry_verts", tri_verts[on_face].contiguous(), persistent=False)
        self.register_buffer("carry_bary", sub.extras["bary"].float()[on_face].contiguous(), persistent=False)
        # interior_motion="rigid": the rest (interior, eyes) posed like carry_parts poses the teacher's
        # head — skull parts at rest, jaw parts moved by J · (the jaw field carried through their
        # triangle) and turned by J · JAW_ANGLE about +x
        from .head import carry_vertex_displacements
        from .head.parts import JAW_PARTS, parts_of
        from .teacher.rig import JAW_ANGLE

        fjaw = _canonical_jaw_field()
        rigid = ~on_face
        on_jaw = torch.isin(parts_of(sub), torch.tensor(JAW_PARTS)) & rigid
        jaw_carry = carry_vertex_displacements(sub, fjaw).float() * on_jaw.float()[:, None]
        self.register_buffer("rigid_idx", torch.nonzero(rigid).squeeze(1), persistent=False)
        self.register_buffer("rigid_on_jaw", on_jaw[rigid].contiguous(), persistent=False)
        self.register_buffer("rigid_jaw_carry", jaw_carry[rigid].contiguous(), persistent=False)
        self.register_buffer("jaw_probe", _jaw_probe(fjaw), persistent=False)
        self.jaw_rotation = float(JAW_ANGLE)
        # zones are measured on the canonical mesh (each Gaussian's triangle + barycentrics), not on
        # the photo-fitted centres, which sit up to ~2 cm off the canonical surface
        zone_w = cloud_membership(sub, falloff=c.zone_falloff).float()
        if c.fusion == "attention":  # plain attention: one zone, no bias
            zone_w = torch.ones(len(idx), 1)
        self.register_buffer("zone_weights", zone_w)

        if c.audio_frontend == "phones":
            from .phonetic import N_PHONES

            self.audio_encoder = AudioEncoder(N_PHONES, c.d_model, c.audio_context, c.hidden, normalize=False)
        else:
            self.audio_encoder = AudioEncoder(c.n_mels, c.d_model, c.audio_context, c.hidden)
        if c.temporal == "citae":
            self.au_encoder: nn.Module = CITAE(
                n_aus=N_AUS,
                window=c.au_window,
                patch_len=c.patch_len,
                stride=c.patch_stride,
                d_model=c.d_model,
                revin_eps=0.02,  # RevIN variance floor for intensities scaled to [0, 1] (0.5 on the 0-5 scale)
                pretext=False,  # no reconstruction decoder inside the full model
                level_embedding=c.au_level,
            )
        else:
            self.au_encoder = PerFrameAUEncoder(n_aus=N_AUS, d_model=c.d_model, pretext=False)
        sizes = dict(d_model=c.d_model, d_audio=c.d_model, d_au=c.d_model, n_freqs=c.pe_freqs, hidden=c.hidden)
        sizes["n_au"] = N_AUS
        n_zones = self.zone_weights.shape[1]
        if c.fusion == "szpab":
            au_prior = "anatomical" if c.au_prior else None
            self.fusion: nn.Module = SZPAB(n_zones=n_zones, bias_mode=c.bias_mode, au_prior=au_prior, **sizes)
        elif c.fusion == "attention":
            self.fusion = SZPAB(n_zones=n_zones, bias_mode="fixed", bias=torch.zeros(1, 3), au_prior=None, **sizes)
        else:  # the baseline takes no zone arguments
            self.fusion = ImplicitFusion(**sizes)
        self.deformation = DeformationField(feat_dim=c.d_model, pe_freqs=c.pe_freqs, hidden=c.hidden)

    @property
    def n_gaussians(self) -> int:
        return self.means.shape[0]

    def audio_features(self, wave, sr: int, fps: float = 25.0, n_frames: int | None = None):
        """The speech features this model reads (its ``audio_frontend``) of a waveform:
        :class:`~emozone_lite.audio.AudioFeatures` (``mel_windows`` are phone windows for
        ``"phones"``)."""
        if self.config.audio_frontend == "phones":
            from .phonetic import phonetic_features

            return phonetic_features(wave, sr, fps, n_frames=n_frames)
        from .audio import features

        return features(wave, sr, fps, n_frames=n_frames)

    def encode(
        self, mel_windows: Tensor, energy: Tensor, aus: Tensor, frames: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Tokens of a whole clip, or of some of its frames.

        Args:
            mel_windows: ``[T, 16, n_mels]`` (``audio.features(...).mel_windows``).
            energy: ``[T]`` per-frame energy in [0, 1].
            aus: ``[T, 17]`` AU intensities (0–5) at the same frame rate.
            frames: ``[F]`` frame indices (default: every frame); the tokens of those frames,
                the same values as ``encode(...)[frames]``, computed from the windows they read.

        Returns:
            ``(audio_tokens [T, audio_context, d], au_tokens [T, 17, d])`` (``F`` rows with ``frames``).
        """
        check_shape(aus, "aus", ("T", N_AUS))
        if aus.shape[0] != mel_windows.shape[0]:
            raise ValueError(
                f"the AU track has {aus.shape[0]} frames but the audio has {mel_windows.shape[0]}; "
                "resample the AUs to the audio frame count (AUTrack.resample(n_frames=...))"
            )
        check_finite(aus, "aus")
        if frames is not None:
            frames = torch.as_tensor(frames, device=aus.device).long().reshape(-1)
            T = aus.shape[0]
            if frames.numel() and (int(frames.min()) < 0 or int(frames.max()) >= T):
                raise ValueError(f"frames must lie in [0, {T - 1}] (the clip's frames), got {frames.tolist()}")
        audio_tokens = self.audio_encoder(mel_windows, energy, frames)
        au_tokens = self.au_encoder(aus[None] / 5.0, frames)[0]  # intensities scaled to [0, 1]
        return audio_tokens, au_tokens

    def fuse(
        self, audio_tokens: Tensor, au_tokens: Tensor, gaussians: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Per-Gaussian features from the fusion module, with the arguments it takes.

        SZ-PAB (``fusion="szpab"`` / ``"attention"``) also reads the zone memberships
        ``self.zone_weights [N, Z]``; implicit fusion takes none.

        Args:
            audio_tokens: ``[B, n_a, d]``.
            au_tokens: ``[B, 17, d]``.
            gaussians: indices of the Gaussians to fuse for (default: all ``N``).

        Returns:
            ``(fused [B, N, d], weights [B, N, M])`` (``weights`` None for implicit fusion).
        """
        mu = self.means if gaussians is None else self.means[gaussians]
        if isinstance(self.fusion, ImplicitFusion):
            return self.fusion(mu, audio_tokens, au_tokens)
        zw = self.zone_weights if gaussians is None else self.zone_weights[gaussians]
        return self.fusion(mu, zw, audio_tokens, au_tokens)

    def deform(self, audio_tokens: Tensor, au_tokens: Tensor) -> HeadState:
        """Deformed Gaussians for ``B`` frames from their tokens ``[B, n_a, d]``, ``[B, 17, d]``."""
        fused, weights = self.fuse(audio_tokens, au_tokens)
        d = self.deformation(fused, self.means)
        disp = self.vertex_displacement(d.dmeans)
        if self.config.face_motion == "carried":
            d = replace(d, dmeans=d.dmeans.index_copy(-2, self.carry_idx, self.carry_face(disp)))
        means, quats, scales = apply_deformation((self.means, self.quats, self.scales), d)
        if self.config.interior_motion == "rigid" and self.rigid_idx.numel():
            means, quats, scales = self._pose_rigid(means, quats, scales, disp)
        return HeadState(means, quats, scales, self.rest_vertices + disp, weights)

    def jaw_opening(self, vertex_disp: Tensor) -> Tensor:
        """``[B]`` the jaw's opening read from vertex displacements ``[B, 468, 3]``, in units of the
        full drop (the teacher's ``J``, :meth:`emozone_lite.teacher.TeacherRig.jaw_opening`): the
        least-squares multiple of the jaw field on the chin and jaw line (the vertices where the
        field is at least half its largest, less the lips' landmarks), clamped at 0 (closed).
        On the teacher's own meshes it follows the teacher's ``J`` with r ≈ 0.98 (``tests/test_model.py``)."""
        return torch.relu((vertex_disp * self.jaw_probe).sum((-2, -1)))

    def _pose_rigid(self, means: Tensor, quats: Tensor, scales: Tensor, vertex_disp: Tensor):
        """``interior_motion="rigid"``: the interior and eyes posed from the jaw opening (see
        :class:`ModelConfig`), written over the field's ``[B, N, ·]`` output."""
        from .geometry import quat_multiply

        r = self.rigid_idx
        B = means.shape[0]
        J = self.jaw_opening(vertex_disp)  # [B]
        m = self.means[r][None] + J[:, None, None] * self.rigid_jaw_carry[None]
        half = 0.5 * self.jaw_rotation * J
        z = torch.zeros_like(half)
        dq = torch.stack([half.cos(), half.sin(), z, z], -1)  # about +x, as the teacher's jaw turns
        q0 = self.quats[r][None].expand(B, -1, -1)
        q = torch.where(self.rigid_on_jaw[None, :, None], normalize_quat(quat_multiply(dq[:, None], q0)), q0)
        s = self.scales[r][None].expand(B, -1, -1)
        return means.index_copy(1, r, m), quats.index_copy(1, r, q), scales.index_copy(1, r, s)

    def carry_face(self, vertex_disp: Tensor) -> Tensor:
        """Offsets ``[B, N_face, 3]`` of the face Gaussians carried from vertex displacements
        ``[B, 468, 3]`` through their triangles: ``Δμ_i = Σ_k bary_ik · ΔV[tri_ik]``
        (``face_motion="carried"``; the same as :func:`emozone_lite.head.carry_vertex_displacements`)."""
        return (vertex_disp[:, self.carry_verts] * self.carry_bary[None, :, :, None]).sum(2)

    def vertex_support(self, vertex_idx) -> Tensor:
        """Indices of the Gaussians whose offsets the read-out of ``vertex_idx`` uses (the face
        Gaussians on those vertices' triangles)."""
        sel = torch.zeros(self.rest_vertices.shape[0], dtype=torch.bool, device=self.means.device)
        sel[torch.as_tensor(vertex_idx, device=sel.device).long()] = True
        rv, rw = self.readout_verts.view(-1, 3), self.readout_weights.view(-1, 3)
        return ((sel[rv]) & (rw > 0)).any(1).nonzero()[:, 0]

    def deform_vertices(
        self, audio_tokens: Tensor, au_tokens: Tensor, vertex_idx, support: Tensor | None = None
    ) -> Tensor:
        """Deformed mesh vertices ``[B, len(vertex_idx), 3]`` computed from their supporting
        Gaussians only (:meth:`vertex_support`): the same values as
        ``deform(...).vertices[:, vertex_idx]`` at a fraction of the cost (a landmark loss on the
        lower face needs ~1/5 of the Gaussians)."""
        idx = torch.as_tensor(vertex_idx, device=self.means.device).long()
        g = self.vertex_support(idx) if support is None else support
        fused, _ = self.fuse(audio_tokens, au_tokens, g)
        dmeans = self.deformation(fused, self.means[g]).dmeans  # [B, G, 3]
        return self.rest_vertices[idx] + self.vertex_displacement(dmeans, g)[:, idx]

    def vertex_displacement(self, dmeans: Tensor, gaussians: Tensor | None = None) -> Tensor:
        """Per-vertex displacement ``[B, 468, 3]`` read out from Gaussian offsets ``[B, N, 3]``
        (same as ``vertex_readout_matrix(...) @ dmeans``, as a scatter); with ``gaussians``, the
        offsets ``[B, G, 3]`` are those of that subset (exact on the vertices it supports)."""
        B = dmeans.shape[0]
        verts, weights = self.readout_verts, self.readout_weights
        if gaussians is not None:
            verts = verts.view(-1, 3)[gaussians].reshape(-1)
            weights = weights.view(-1, 3)[gaussians].reshape(-1)
        contrib = dmeans.repeat_interleave(3, dim=1) * weights[None, :, None]  # [B, 3N, 3]
        out = dmeans.new_zeros(B, self.rest_vertices.shape[0], 3)
        return out.index_add(1, verts, contrib)

    def forward(self, mel_windows: Tensor, energy: Tensor, aus: Tensor, frames: Tensor | None = None) -> HeadState:
        """Deformed Gaussians for ``frames`` (default: every frame) of a clip."""
        return self.deform(*self.encode(mel_windows, energy, aus, frames))

    def _rasterize(self, means, quats, scales, viewmats, Ks, width, height, background, backend) -> Tensor:
        """One frame's Gaussians into ``C`` cameras → ``[C, H, W, 3]``. ``background``: ``None``,
        an RGB colour ``[3]``, or images ``[H, W, 3]`` / ``[C, H, W, 3]`` put behind the head
        (``colour + (1 − alpha) · image``: e.g. the portrait's scenery,
        :func:`emozone_lite.head.portrait.render_scenery`)."""
        from .render import rasterize

        C = viewmats.shape[0]
        image_bg = background is not None and background.ndim >= 3
        bg = None if background is None or image_bg else background.to(self.means).expand(C, 3)
        img, alpha, _ = rasterize(means, quats, scales, self.opacities, self.colors, viewmats, Ks, width, height,
                                  backend=backend, backgrounds=bg)  # fmt: skip
        if image_bg:
            if background.shape[-3:] != (height, width, 3):
                raise ValueError(f"a background image must be [H, W, 3] = [{height}, {width}, 3] (or [C, H, W, 3]), "
                                 f"got {list(background.shape)}")  # fmt: skip
            img = img + (1 - alpha) * background.to(img)
        return img

    def render(
        self,
        state: HeadState,
        viewmats: Tensor,
        Ks: Tensor,
        width: int,
        height: int,
        background: Tensor | None = None,
        backend: str = "auto",
    ) -> Tensor:
        """Render ``B`` frames from ``C`` cameras → ``[B, C, H, W, 3]`` (``background``: a colour
        ``[3]`` or images behind the head, see :meth:`_rasterize`)."""
        out = [
            self._rasterize(
                state.means[b], state.quats[b], state.scales[b], viewmats, Ks, width, height, background, backend
            )  # fmt: skip
            for b in range(state.means.shape[0])
        ]
        return torch.stack(out)

    def render_frames(
        self,
        state: HeadState,
        viewmats: Tensor,
        Ks: Tensor,
        width: int,
        height: int,
        background: Tensor | None = None,
        backend: str = "auto",
    ) -> Tensor:
        """Render ``B`` frames, each from its own camera (``viewmats [B, 4, 4]``, ``Ks [B, 3, 3]``:
        a video's frames, each with the head pose of its frame) → ``[B, H, W, 3]``."""
        B = state.means.shape[0]
        if viewmats.shape[0] != B or Ks.shape[0] != B:
            raise ValueError(f"render_frames needs one camera per frame: {B} frames, {viewmats.shape[0]} viewmats, "
                             f"{Ks.shape[0]} Ks")  # fmt: skip
        out = [
            self._rasterize(
                state.means[b],
                state.quats[b],
                state.scales[b],
                viewmats[b : b + 1],
                Ks[b : b + 1],
                width,
                height,
                background,
                backend,
            )[0]  # fmt: skip
            for b in range(B)
        ]
        return torch.stack(out)

    def attention_mass(self, state: HeadState) -> Tensor | None:
        """Share of each Gaussian's attention on audio / AU / null tokens ``[B, N, 3]``."""
        if state.weights is None:
            return None
        tm = self.fusion.token_modality(self.config.audio_context)
        return modality_mass(state.weights, tm)
