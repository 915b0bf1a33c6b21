"""Can a face detector see the teacher's expressions and speech? (issue: "a face you can see").

    python benchmarks/expression_visibility.py [--size 256] [--out DIR]

Renders the teacher head from the front at ``--size``² and runs the toolkit's face detector
(MediaPipe's face landmarker, ``emozone_lite.landmarks``) on the pixels:

1. **Neutral**: the detector's AU12, AU25 and AU26 on the rest head (targets ≤ 1.0, ≤ 0.5, ≤ 0.5).
2. **Presets**: for each emotion preset, the rise of its intended AUs over neutral (target: ≥ 1.5
   on average) and how much the other AUs move (target: ≤ 0.5 on average), read two ways —
   from MediaPipe's blendshapes (``landmarks.blendshapes_to_aus``, the reading the targets are
   stated for) and geometrically from the detected landmarks relative to the detected neutral
   face (``landmarks.estimate_aus``, OpenFace-style person normalisation).
3. **Each AU alone at its FACS maximum** (intensity 5): what the two readings see of it, and
   the raw blendshape scores it is read from (their rise over neutral) — where a blendshape
   score does not move while the landmarks do, no face geometry can raise that reading.
4. **Speech**: over each bundled utterance, the correlation of the mouth opening the detector
   measures with the rig's geometric opening (target ≥ 0.9), and the lip gap on the bilabials
   /p b m/ as a fraction of the utterance's largest (target ≤ 10 %), on pixels and in the mesh.

Prints a table and a verdict per target; ``--out`` also writes ``expression_visibility.json``
and a frame strip of mouths (closed, open, rounded) and presets.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from emozone_lite.threads import configure_threads

configure_threads()

import numpy as np  # noqa: E402
import torch  # noqa: E402

UTTERANCES = ("arctic_a0009", "arctic_a0007")


def _render(head, rig, cam, aus=None, visemes=None) -> np.ndarray:
    from emozone_lite.render import render_image
    from emozone_lite.viz import to_uint8

    a = torch.zeros(1, 17) if aus is None else torch.as_tensor(np.asarray(aus), dtype=torch.float32).reshape(1, 17)
    w = None if visemes is None else visemes.reshape(1, -1)
    means, quats, scales = rig.pose_head(head, a, w)
    img = render_image(means[0], quats[0], scales[0], head.opacities, head.colors, cam, background=[1.0, 1.0, 1.0])
    return to_uint8(img)


def presets(head, rig, cam) -> dict:
    from emozone_lite import aus as A
    from emozone_lite.landmarks import blendshapes_to_aus, detect_landmarks, estimate_aus

    neutral_face = detect_landmarks(_render(head, rig, cam))
    n_bs = blendshapes_to_aus(neutral_face.blendshapes)
    out = {"neutral": {A.AU_NAMES[k]: float(n_bs[k]) for k in range(17)}, "presets": {}}
    for name in A.EMOTION_PRESETS[1:]:
        p = A.preset(name)
        face = detect_landmarks(_render(head, rig, cam, p))
        intended = p > 0.5
        row = {}
        for how, d in (("blendshapes", blendshapes_to_aus(face.blendshapes) - n_bs),
                       ("geometric", estimate_aus(face, neutral=neutral_face))):  # fmt: skip
            row[how] = {
                "intended_rise": float(d[intended].mean()),
                "others_move": float(np.abs(d[~intended]).mean()),
                "per_au": {A.AU_NAMES[k]: round(float(d[k]), 2) for k in range(17)},
            }
        out["presets"][name] = row
    return out


def single_aus(head, rig, cam) -> dict:
    """Each AU alone at intensity 5 (its FACS maximum): the blendshape and the landmark readings
    of it over neutral, and the rise of the raw blendshape scores it is read from."""
    from emozone_lite import aus as A
    from emozone_lite.landmarks import BLENDSHAPE_TO_AU, blendshapes_to_aus, detect_landmarks, estimate_aus

    neutral = detect_landmarks(_render(head, rig, cam))
    n_bs = blendshapes_to_aus(neutral.blendshapes)
    out = {}
    for au in BLENDSHAPE_TO_AU:
        k = A.au_index(au)
        a = np.zeros(17, np.float32)
        a[k] = 5.0
        face = detect_landmarks(_render(head, rig, cam, a))
        out[au] = {
            "blendshapes": float(blendshapes_to_aus(face.blendshapes)[k] - n_bs[k]),
            "geometric": float(estimate_aus(face, neutral=neutral)[k]),
            "scores": {
                b: round(float(face.blendshapes[b] - neutral.blendshapes[b]), 3) for b, _ in BLENDSHAPE_TO_AU[au]
            },
        }
    return out


def speech(head, rig, cam) -> dict:
    from emozone_lite.audio import read_phone_labels
    from emozone_lite.metrics import detect_frames, lip_sync_corr
    from emozone_lite.teacher import mouth_opening, sequence
    from emozone_lite.utils import data_path

    rest = float(mouth_opening(rig.vertices))
    out = {}
    for utt in UTTERANCES:
        lab = data_path(utt + "_phone.lab")
        seq = sequence(lab, None, [cam], head=head, rig=rig)
        det = detect_frames(seq.frames[:, 0])
        geo = np.maximum(seq.mouth_opening.numpy() - rest, 0.0)  # the head's lip gap (its lips touch at rest)
        pix = det.mouth_opening
        T = seq.n_frames
        bil = np.zeros(T, bool)
        for ph in read_phone_labels(lab):
            if ph.phone in ("p", "b", "m"):
                bil[min(T - 1, int(0.5 * (ph.start + ph.end) * seq.fps))] = True
        ok = det.found
        lo = np.nanmin(pix[ok])
        out[utt] = {
            "frames": T,
            "faces_missing": det.n_missing,
            "corr_pixel_vs_geometric": float(lip_sync_corr(pix[ok], geo[ok])),
            "bilabial_frames": int(bil.sum()),
            "bilabial_gap_pixel": float(np.max((pix[bil & ok] - lo) / (np.nanmax(pix[ok]) - lo)))
            if (bil & ok).any()
            else float("nan"),
            "bilabial_gap_geometric": float(np.max(geo[bil] / geo.max())) if bil.any() else float("nan"),
            "max_lip_gap_mm": float(100 * geo.max()),
        }
    return out


def strip(head, rig, out: Path) -> Path:
    """Mouth close-ups (rest, /m/, /aa/, /E/, /O/, /U/) above the front view of every preset."""
    import imageio.v3 as iio

    from emozone_lite import aus as A
    from emozone_lite.camera import Camera

    part = head.extras.get("part")
    inside = (part >= 1) & (part <= 5) if part is not None else None
    mouth = head.means[inside].mean(0).tolist() if inside is not None and bool(inside.any()) else (0.0, -0.4, 0.5)
    mc = Camera.orbit(0, width=192, height=144, fov_deg=11, target=(0.0, float(mouth[1]) + 0.03, 0.5))
    row1 = [_render(head, rig, mc, None, rig.viseme_vector(v)) for v in ("sil", "PP", "aa", "E", "O", "U")]
    cam = Camera.orbit(0, width=144, height=144)
    row2 = [_render(head, rig, cam, A.preset(n)) for n in A.EMOTION_PRESETS]
    top = np.concatenate(row1, 1)
    bottom = np.concatenate(row2, 1)
    w = max(top.shape[1], bottom.shape[1])
    pad = lambda im: np.pad(im, ((0, 0), (0, w - im.shape[1]), (0, 0)), constant_values=255)
    path = out / "expression_strip.png"
    iio.imwrite(path, np.concatenate([pad(top), pad(bottom)], 0))
    return path


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--out", default=None, help="folder for expression_visibility.json and the strip")
    a = p.parse_args(argv)

    from emozone_lite.camera import Camera
    from emozone_lite.head import load_head
    from emozone_lite.teacher import TeacherRig

    t0 = time.perf_counter()
    head, rig = load_head(), TeacherRig.default()
    cam = Camera.orbit(0, width=a.size, height=a.size)
    res = {"size": a.size, **presets(head, rig, cam), "single_aus": single_aus(head, rig, cam),
           "speech": speech(head, rig, cam)}  # fmt: skip
    n = res["neutral"]
    checks = {
        "neutral AU12 <= 1.0": n["AU12"] <= 1.0,
        "neutral AU25 <= 0.5": n["AU25"] <= 0.5,
        "neutral AU26 <= 0.5": n["AU26"] <= 0.5,
    }
    print(f"teacher, front view {a.size}², detector on pixels")
    print(f"neutral: AU12 {n['AU12']:.2f}, AU25 {n['AU25']:.2f}, AU26 {n['AU26']:.2f}")
    print(f"\n{'preset':<10}{'rise (blendshapes)':>20}{'others':>8}{'rise (geometric)':>18}{'others':>8}")
    for name, r in res["presets"].items():
        b, g = r["blendshapes"], r["geometric"]
        print(
            f"{name:<10}{b['intended_rise']:>20.2f}{b['others_move']:>8.2f}{g['intended_rise']:>18.2f}{g['others_move']:>8.2f}"
        )
        for how in ("blendshapes", "geometric"):
            checks[f"{name}: intended rise >= 1.5 ({how})"] = r[how]["intended_rise"] >= 1.5
            checks[f"{name}: others move <= 0.5 ({how})"] = r[how]["others_move"] <= 0.5
    print(f"\n{'AU alone at 5':<14}{'blendshapes':>12}{'geometric':>10}   raw blendshape scores (rise)")
    for au, r in res["single_aus"].items():
        scores = ", ".join(f"{b} {v:+.3f}" for b, v in r["scores"].items())
        print(f"{au:<14}{r['blendshapes']:>12.2f}{r['geometric']:>10.2f}   {scores}")
    print(
        f"\n{'utterance':<14}{'corr pixel~geom':>16}{'bilabial gap pixel':>20}{'geom':>7}{'max gap mm':>12}{'no face':>9}"
    )
    for utt, r in res["speech"].items():
        print(f"{utt:<14}{r['corr_pixel_vs_geometric']:>16.3f}{r['bilabial_gap_pixel']:>20.2f}"
              f"{r['bilabial_gap_geometric']:>7.2f}{r['max_lip_gap_mm']:>12.1f}{r['faces_missing']:>9d}")  # fmt: skip
        checks[f"{utt}: mouth opening corr >= 0.9"] = r["corr_pixel_vs_geometric"] >= 0.9
        checks[f"{utt}: bilabials closed (<= 10 %, pixels)"] = r["bilabial_gap_pixel"] <= 0.10
    res["checks"] = checks
    res["seconds"] = round(time.perf_counter() - t0, 1)
    print("\nchecks:")
    for k, v in checks.items():
        print(f"  {'PASS' if v else 'FAIL'}  {k}")
    print(f"({res['seconds']:.0f} s)")
    if a.out:
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "expression_visibility.json").write_text(json.dumps(res, indent=2))
        print("wrote", out / "expression_visibility.json", strip(head, rig, out))
    return res


if __name__ == "__main__":
    main()
