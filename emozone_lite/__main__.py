"""Command line: ``emozone-lite demo`` (the main job), ``render`` and ``track`` (your own files).

    python -m emozone_lite demo [--fast] [--out outputs]
    python -m emozone_lite render --audio my.wav [--aus my_openface.csv] --checkpoint outputs/model.pt --out my.mp4
    python -m emozone_lite track my_video.mp4 --out my_openface.csv [--plot my_aus.png]

The work itself lives in :mod:`emozone_lite.demo` and :mod:`emozone_lite.track`; this
module parses arguments, applies the toolkit's thread policy
(:func:`emozone_lite.threads.configure_threads`) before torch is imported, and turns bad
input into a clear message and exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from .threads import configure_threads


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="emozone-lite", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="train on CPU, run the ablation, write outputs/demo.mp4 + metrics")
    d.add_argument("--fast", action="store_true", help="a quick run (fewer steps, smaller images); also EMOZONE_FAST=1")
    d.add_argument("--out", default="outputs")
    r = sub.add_parser("render", help="render your own audio (+ OpenFace CSV) with a checkpoint")
    r.add_argument("--audio", required=True)
    r.add_argument("--aus", default=None, help="OpenFace 2.x CSV (AU*_r columns)")
    r.add_argument("--checkpoint", required=True)
    r.add_argument("--out", default="outputs/render.mp4")
    r.add_argument("--yaw", type=float, default=0.0)
    r.add_argument("--size", type=int, default=256)
    k = sub.add_parser("track", help="your talking video → an OpenFace 2.x AU CSV (MediaPipe landmarks → AUs)")
    k.add_argument("video", help="mp4 / mov / avi / webm / mkv with a visible face")
    k.add_argument("--out", required=True, help="the OpenFace CSV to write (its folder must exist)")
    k.add_argument("--plot", default=None, help="also write the AU tracks over time as a PNG")
    k.add_argument("--method", choices=("geometric", "blendshapes"), default="geometric")
    k.add_argument("--quiet", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    configure_threads()  # before the first torch import below
    from .utils import fast_mode

    try:
        if a.cmd == "demo":
            from .demo import demo

            demo(fast=a.fast or fast_mode(), out=a.out)
        elif a.cmd == "track":
            from .track import track_video

            tr = track_video(a.video, a.out, plot=a.plot, progress=not a.quiet, method=a.method)
            print(
                f"wrote {a.out}" + (f" and {a.plot}" if a.plot else "")
                + f": {len(tr)} frames at {tr.fps:g} fps, a face in {tr.n_found}"
            )  # fmt: skip
        else:
            from .demo import render_files

            path = render_files(a.audio, a.checkpoint, a.out, aus=a.aus, yaw=a.yaw, size=a.size)
            print(f"wrote {path}")
    except (ValueError, FileNotFoundError) as e:
        print(f"emozone-lite {a.cmd}: error: {e}", file=sys.stderr)
        return 2
    return 0


def __getattr__(name: str):
    # old home of the demo's functions: ``from emozone_lite.__main__ import render_clip``
    if name in ("demo", "render_clip", "render_files"):
        from . import demo as _demo

        return getattr(_demo, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    sys.exit(main())
