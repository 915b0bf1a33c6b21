"""Command line: ``emozone-lite demo`` (the main job) and ``emozone-lite render`` (your own files).

    python -m emozone_lite demo [--fast] [--out outputs]
    python -m emozone_lite render --audio my.wav [--aus my_openface.csv] --checkpoint outputs/model.pt --out my.mp4

The work itself lives in :mod:`emozone_lite.demo`; this module parses arguments, applies
the toolkit's thread policy (:func:`emozone_lite.threads.configure_threads`) before torch
is imported, and turns bad input into a clear message and exit code 2.
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
    a = p.parse_args(argv)
    configure_threads()  # before the first torch import below
    from .demo import demo, render_files
    from .utils import fast_mode

    try:
        if a.cmd == "demo":
            demo(fast=a.fast or fast_mode(), out=a.out)
        else:
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
