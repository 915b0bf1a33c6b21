"""How well does ``emozone-lite track`` recover the AUs that drove a talking face? (issue: "your own video").

    python benchmarks/track_aus.py [--method geometric|blendshapes]

Renders teacher-rig talking videos with speech muxed as their sound track, tracks each one with
:func:`emozone_lite.track.track_video` (MediaPipe on every frame, the reading ``track`` writes) and
prints the Pearson correlation of every active AU with the AUs that drove the teacher:

* ``test``: the clip ``tests/test_track.py`` renders (ARCTIC a0007, 4 s; AU01+AU02, AU12, AU04 with a
  little smile, AU26 in turn), at 320×240 30 fps and 640×480 30 fps;
* ``mixed``: another script over a0009 (3 s): AU04 at three strengths between a smile, a brow raise
  and a jaw drop, at 320×240 30 fps, 640×480 25 fps and 480×360 24 fps.

The target of the issue is r ≥ 0.8 per active AU. Measured on 2 cores: ``emozone_lite.track``'s
module docstring and the README ("Your own video").
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emozone_lite.threads import configure_threads

configure_threads()

import numpy as np  # noqa: E402


def _test_clip_script():
    """The script, length and size of the clip ``tests/test_track.py`` renders (kept in one place: there)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "tests" / "test_track.py"
    spec = importlib.util.spec_from_file_location("test_track", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.SCRIPT, mod.SECONDS, (mod.W, mod.H, mod.FPS)


#: AU04 at three strengths between a smile, a brow raise and a jaw drop (3 s over a0009)
MIXED_SCRIPT = [
    (0.0, {}), (0.2, {}), (0.5, {"AU04": 3}), (0.8, {"AU04": 3}), (1.1, {}), (1.3, {"AU12": 3}), (1.5, {"AU12": 3}),
    (1.8, {"AU04": 5, "AU26": 2}), (2.1, {"AU04": 5}), (2.4, {"AU01": 3, "AU02": 3}), (2.6, {}), (2.8, {"AU04": 2}),
    (3.0, {}),
]  # fmt: skip
#: (script, seconds, utterance, [(width, height, fps), …], torch seed)
MIXED = (MIXED_SCRIPT, 3.0, "a0009", [(320, 240, 30.0), (640, 480, 25.0), (480, 360, 24.0)], 1)


def render_clip(script, seconds: float, utterance: str, w: int, h: int, fps: float, seed: int, path: Path):
    """The teacher speaking ``utterance`` with ``script`` at ``w``×``h`` and ``fps`` → (mp4 path, true AUs)."""
    from emozone_lite.teacher import talking_video
    from emozone_lite.utils import data_path

    lab, wav = data_path(f"arctic_{utterance}_phone.lab"), data_path(f"arctic_{utterance}.wav")
    return talking_video(path, script, lab, wav, seconds=seconds, width=w, height=h, fps=fps, seed=seed)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", choices=("geometric", "blendshapes"), default="geometric")
    a = p.parse_args(argv)
    from emozone_lite.aus import AU_NAMES, au_index
    from emozone_lite.track import track_video

    t0 = time.perf_counter()
    out: dict = {"method": a.method, "cores": os.cpu_count(), "clips": {}}
    print(f"track ({a.method} reading): Pearson r with the AUs that drove the teacher; target >= 0.8")
    script, seconds, size = _test_clip_script()
    clips = {"test": (script, seconds, "a0007", [size, (640, 480, size[2])], 0), "mixed": MIXED}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (script, seconds, utt, sizes, seed) in clips.items():
            for w, h, fps in sizes:
                video, true = render_clip(script, seconds, utt, w, h, fps, seed, Path(tmp) / f"{name}_{w}.mp4")
                res = track_video(video, Path(tmp) / f"{name}_{w}.csv", method=a.method, progress=False)
                active = [k for k in AU_NAMES if true[:, au_index(k)].max() > 0]
                r = {k: float(np.corrcoef(true[:, au_index(k)], res.aus.au(k))[0, 1]) for k in active}
                key = f"{name} {w}x{h} {fps:g} fps"
                out["clips"][key] = r
                print(f"{key:<26}" + "  ".join(f"{k} {v:5.2f}" for k, v in r.items()), flush=True)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"({out['seconds']:.0f} s on {out['cores']} cores)")
    return out


if __name__ == "__main__":
    main()
