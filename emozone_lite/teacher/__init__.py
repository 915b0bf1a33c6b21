"""The teacher rig: known facial motion that generates the training frames.

No public talking-head video with AU labels ships offline, so emozone-lite makes its own
ground truth (docs/design.md, "The head and the teacher"). The teacher is a hand-built
*blendshape rig* on MediaPipe's canonical face mesh:

- **AU fields** ``au_basis [17, 468, 3]``: one displacement field per Action Unit, in world
  units (1 unit = 10 cm) at intensity 5 (FACS "E", maximum). Each field is built from a few
  anatomical *anchor* vertices (e.g. the inner brow for AU01) that move by a given vector,
  spread over the surface with a smooth, compactly supported radial falloff
  ``φ(d) = (1 - (d/r)²)³`` of the **geodesic** distance ``d`` along the mesh. The mesh is
  cut between the upper and lower lips and between the upper and lower eyelids first, so a
  lower-lip motion does not leak into the upper lip across the mouth (and likewise for the
  lids). *Pins* (anchors that move by zero) keep e.g. the lid margin still while the brow
  rises. AU26 (jaw drop) is a rotation of the mandible about a pivot behind the mouth
  (linearised, so it is a field too) weighted by a smooth mandible mask.
- **Viseme shapes** for the 15 Oculus visemes of :data:`emozone_lite.audio.VISEMES`, mixed
  from six articulatory components: jaw opening, lip rounding, protrusion, spreading,
  bilabial closure and the labiodental lower-lip tuck.

Both act linearly, except for the **jaw**, where speech and expression meet:

    disp(t) = Σ_{k ≠ AU26} (a_k(t) / 5) · B_k                       # expression
            + Σ_v w_v(t) · S_v                                      # speech, without its jaw
            + J(t) · F_jaw,   J = (j_s^p + j_e^p)^(1/p),  p = 4     # shared jaw
    with  j_s = Σ_v w_v(t) · jaw_v  (speech)  and  j_e = a_AU26(t) / 5  (expression),

i.e. the jaw opens to a *soft maximum* of what speech and AU26 ask for (never their sum, and
exactly either one when the other is zero). Everything else on the mouth simply adds: a smile
(AU12) pulls the corners that an "U" rounds, AU25 parts the lips that a "PP" presses shut.
That overlap on the mouth is deliberate — it is the conflict EmoZone-Talker's zones resolve.

Speech timing comes from phone labels through co-articulated **viseme weights**
(:func:`viseme_weights`: Cohen–Massaro dominance functions, rows sum to 1) or, without
labels, from a crude audio proxy (:func:`viseme_weights_from_audio`).
:meth:`TeacherRig.sequence` drives the Gaussian head with both and renders it from several
cameras: a :class:`TeacherSequence` with frames, vertices, Gaussian states and 2D landmarks.

Where things live (every name below is importable from ``emozone_lite.teacher``):

=============== ==========================================================================
module          contents
=============== ==========================================================================
``anatomy``     landmark index tables (``R_UPPER_LID`` …), :func:`mirror_index`, the
                lip/lid cut, :func:`geodesic_distances`, anchors and their falloff,
                :func:`mandible_mask` — the face's anatomy on the canonical mesh
``rig``         AU and articulatory displacement fields, :func:`jaw_field` and the soft-max
                jaw, :class:`TeacherRig`, :func:`mouth_opening`, :func:`eye_aperture`
``speech``      :data:`VISEME_ARTICULATION`, :data:`DOMINANCE`, :func:`viseme_weights`,
                :func:`viseme_weights_from_audio`
``sequences``   :class:`TeacherSequence` and :func:`sequence` (speech + AUs → rendered clip)
=============== ==========================================================================
"""

from __future__ import annotations

from .anatomy import (  # noqa: F401  (private names importable as before the split)
    _EPS_SHEPARD,
    CHIN_BOSS,
    MOUTH_MID_LOWER,
    MOUTH_MID_UPPER,
    R_CHEEK,
    R_EYE_CORNERS,
    R_INNER_BROW,
    R_LIP_CORNERS,
    R_LOWER_INNER_LIP,
    R_LOWER_LID,
    R_LOWER_OUTER_LIP,
    R_MID_BROW,
    R_NASOLABIAL,
    R_NOSE_SIDE,
    R_OUTER_BROW,
    R_UPPER_INNER_LIP,
    R_UPPER_LID,
    R_UPPER_OUTER_LIP,
    _Anchor,
    _anchor_field,
    _canonical_mirror,
    _edge_graph,
    _expand_anchors,
    _falloff,
    _lip_and_lid_pairs,
    _pin,
    _smoothstep,
    geodesic_distances,
    mandible_mask,
    mirror_index,
)
from .rig import (  # noqa: F401
    AU_MAGNITUDES,
    JAW_ANGLE,
    JAW_PIVOT,
    JAW_SOFTMAX_P,
    TeacherRig,
    _au_anchor_specs,
    _component_fields,
    _verts,
    eye_aperture,
    jaw_field,
    mouth_opening,
)
from .sequences import TeacherSequence, _au_values, _speech, sequence, talking_video, vertex_sequence  # noqa: F401
from .speech import (  # noqa: F401
    DOMINANCE,
    VISEME_ARTICULATION,
    _as_phones,
    _check_frames,
    viseme_weights,
    viseme_weights_from_audio,
)

__all__ = [
    "TeacherRig",
    "TeacherSequence",
    "sequence",
    "talking_video",
    "vertex_sequence",
    "viseme_weights",
    "viseme_weights_from_audio",
    "mirror_index",
    "geodesic_distances",
    "mandible_mask",
    "jaw_field",
    "mouth_opening",
    "eye_aperture",
    "JAW_SOFTMAX_P",
    "AU_MAGNITUDES",
    "VISEME_ARTICULATION",
    "DOMINANCE",
]
