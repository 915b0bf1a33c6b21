"""The Gaussian head: seeded on the canonical face mesh, coloured from a photo, refined.

Pipeline (:func:`build_head` runs it end to end):

1. :func:`register_mesh_to_photo` — detect MediaPipe's 478 face landmarks on the photo
   (:func:`emozone_lite.landmarks.detect_landmarks`; the first 468 are the canonical mesh
   vertices), fit a pinhole camera to the canonical mesh (rigid pose, Levenberg–Marquardt
   on the reprojection error of the 468 vertices, focal length chosen so that the head
   sits at the toolkit's orbit distance), then **personalise** the mesh: every vertex is
   moved in the camera's image plane, at its own depth, until it projects exactly onto its
   detected landmark. The head therefore keeps the toolkit's world frame
   (``Camera.orbit(yaw_deg=0)`` looks at its face) and its canonical depth profile, while
   its outline, eyes and mouth line up with the photo's.
2. :func:`seed_gaussians` — ``N`` flat Gaussians sampled on the (personalised) mesh's
   triangles with area weighting; each remembers its triangle and barycentrics
   (``extras["tri_index"]``, ``extras["bary"]``) so displacements of the 468 mesh
   vertices (the teacher rig) carry to the Gaussians (:func:`carry_vertex_displacements`,
   :func:`carry_triangle_rotations`).
3. :func:`colour_from_photo` — each Gaussian takes the photo's colour where the fitting
   camera projects its centre (bilinear). Gaussians the photo does not see well (facing
   away, or edge-on along the face oval) take the colour of their mirror image (the face
   is nearly symmetric) or of the nearest well-seen Gaussian, so ±30° views stay clean.
4. :func:`fit_head` — refine colours, opacities, tangent scales and small mean offsets
   by rendering through :func:`emozone_lite.render.rasterize` and minimising
   ``0.8·L1 + 0.2·(1 − SSIM)`` (:func:`emozone_lite.metrics.l1_dssim_loss`) against the
   photo inside the face mask.
5. :func:`finish_head` — make the photographed face a neutral, movable head: remove the
   photographed expression and close the lips (:mod:`~emozone_lite.head.neutral`), set
   eyeballs behind the lids (:mod:`~emozone_lite.head.eyes`) and put teeth, a tongue and a
   dark oral cavity behind the lips (:mod:`~emozone_lite.head.mouth`). Every Gaussian gets a
   part (:mod:`~emozone_lite.head.parts`) that says how it moves (:func:`carry_parts`).

Where things live (every name below is importable from ``emozone_lite.head``):

============ =============================================================================
module       contents
============ =============================================================================
``seeding``  :data:`HEAD_EXTRAS`, :func:`seed_gaussians`, :func:`carry_vertex_displacements`,
             :func:`carry_triangle_rotations`
``photo``    :data:`DEFAULT_PHOTO`, :func:`load_photo`, :func:`register_mesh_to_photo`
             (:class:`LandmarkFit`), :func:`crop_to_face`, :func:`colour_from_photo`,
             :func:`face_mask`, :func:`solve_pose`
``seeding``  (also) :func:`triangle_deformations`, :func:`stretch_gaussians`
``fitting``  :func:`fit_head` (:class:`HeadFit`), :func:`masked_psnr`, :func:`finish_head`,
             :func:`build_head` (:class:`HeadBuild`)
``neutral``  :func:`neutral_vertices`, :func:`neutralize_head`, :func:`mouth_gap_triangles`
``eyes``     :func:`eyeball_parts`, :func:`eyeball_extension`
``mouth``    :func:`mouth_interior`
``parts``    the part codes (:data:`FACE`, :data:`EYES`, …), :func:`parts_of`, :func:`carry_parts`
``files``    :data:`DEFAULT_HEAD`, :func:`save_head`, :func:`load_head`
============ =============================================================================

Rotations and frames come from :mod:`emozone_lite.geometry` (:func:`triangle_frames` is
re-exported here).
"""

from __future__ import annotations

from ..geometry import triangle_frames
from .eyes import eyeball_extension, eyeball_parts
from .files import DEFAULT_HEAD, load_head, save_head
from .fitting import HeadBuild, HeadFit, build_head, finish_head, fit_head, masked_psnr
from .mouth import mouth_interior
from .neutral import mouth_gap_triangles, neutral_vertices, neutralize_head, photographed_teeth_color
from .parts import (
    CAVITY_LOWER,
    CAVITY_UPPER,
    EYES,
    FACE,
    LOWER_TEETH,
    PART_NAMES,
    TONGUE,
    UPPER_TEETH,
    carry_parts,
    follows_mesh,
    parts_of,
)
from .photo import (  # noqa: F401  (private names importable as before the split)
    DEFAULT_PHOTO,
    LandmarkFit,
    _project_np,
    _sample_bilinear,
    colour_from_photo,
    crop_to_face,
    face_mask,
    load_photo,
    register_mesh_to_photo,
    solve_pose,
)
from .seeding import (  # noqa: F401
    HEAD_EXTRAS,
    _as_mesh,
    _tri_bary,
    _triangles,
    carry_triangle_rotations,
    carry_vertex_displacements,
    seed_gaussians,
    stretch_gaussians,
    triangle_deformations,
)

__all__ = [
    "CAVITY_LOWER",
    "CAVITY_UPPER",
    "EYES",
    "FACE",
    "LOWER_TEETH",
    "PART_NAMES",
    "TONGUE",
    "UPPER_TEETH",
    "carry_parts",
    "eyeball_extension",
    "eyeball_parts",
    "finish_head",
    "follows_mesh",
    "mouth_gap_triangles",
    "mouth_interior",
    "neutral_vertices",
    "neutralize_head",
    "parts_of",
    "photographed_teeth_color",
    "stretch_gaussians",
    "triangle_deformations",
    "DEFAULT_HEAD",
    "DEFAULT_PHOTO",
    "HEAD_EXTRAS",
    "HeadBuild",
    "HeadFit",
    "LandmarkFit",
    "build_head",
    "carry_triangle_rotations",
    "carry_vertex_displacements",
    "colour_from_photo",
    "crop_to_face",
    "face_mask",
    "fit_head",
    "load_head",
    "load_photo",
    "masked_psnr",
    "register_mesh_to_photo",
    "save_head",
    "seed_gaussians",
    "solve_pose",
    "triangle_frames",
]
