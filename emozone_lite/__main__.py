"""Command line: ``emozone-lite demo`` (the main job), ``track``, ``fit`` and ``render`` (your own files), ``train`` (one run).

    python -m emozone_lite demo [--fast] [--out outputs]
    python -m emozone_lite train --config my_run.json [--out runs/my_run]
    torchrun --nproc_per_node=2 -m emozone_lite train --config my_run.yaml --out runs/my_run
    python -m emozone_lite render --audio my.wav [--aus my_openface.csv] --checkpoint outputs/model.pt --out my.mp4
    python -m emozone_lite track my_video.mp4 --out my_openface.csv [--plot my_aus.png]
    python -m emozone_lite fit my_video.mp4 --out runs/me [--audio speech.wav] [--frame K]
    python -m emozone_lite render --audio new.wav --checkpoint runs/me/model.pt --out me.mp4

The work itself lives in :mod:`emozone_lite.demo`, :mod:`emozone_lite.track`, :mod:`emozone_lite.fit` and
:func:`emozone_lite.train.train_from_config` (data-parallel under torchrun:
:mod:`emozone_lite.distributed`); this
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
    r.add_argument(
        "--head", default=None, help="the head PLY the checkpoint was trained on (default: the one it names)"
    )
    r.add_argument(
        "--portrait", default="auto",
        help="the portrait PLY to draw the face in; 'auto' (default): a fit folder's portrait.ply, or the "
        "bundled portrait for a model on the bundled head; 'none': the face alone on white",
    )  # fmt: skip
    k = sub.add_parser("track", help="your talking video → an OpenFace 2.x AU CSV (MediaPipe landmarks → AUs)")
    k.add_argument("video", help="mp4 / mov / avi / webm / mkv with a visible face")
    k.add_argument("--out", required=True, help="the OpenFace CSV to write (its folder must exist)")
    k.add_argument("--plot", default=None, help="also write the AU tracks over time as a PNG")
    k.add_argument("--method", choices=("geometric", "blendshapes"), default="geometric")
    k.add_argument("--quiet", action="store_true", help="no progress bar")
    f = sub.add_parser(
        "fit", help="your talking video → a model of that person (head, AUs, student trained on its frames)"
    )
    f.add_argument("video", help="mp4 / mov / avi / webm / mkv of one person speaking, face visible")
    f.add_argument(
        "--out",
        required=True,
        help="folder for model.pt, head.ply, portrait.ply, aus.csv, fit.json, report.json (resumed)",
    )
    f.add_argument("--audio", default=None, help="the speech, when the video has no sound track")
    f.add_argument(
        "--frame", type=int, default=None, help="video frame the head is built from (default: the most neutral)"
    )
    f.add_argument("--steps", type=int, default=None, help="training steps (default 1000; 60 with --fast)")
    f.add_argument(
        "--fast", action="store_true", help="a quick fit (smaller head and crops, fewer steps); also EMOZONE_FAST=1"
    )
    f.add_argument("--quiet", action="store_true", help="no progress bars")
    t = sub.add_parser("train", help="train one model from a JSON / YAML config; data-parallel under torchrun")
    t.add_argument("--config", required=True, help='{"model": {ModelConfig fields}, "train": {TrainConfig fields}}')
    t.add_argument("--out", default=None, help="folder of checkpoint.pt, resumed when there (default outputs/runs/…)")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    a = p.parse_args(argv)
    configure_threads()  # before the first torch import below
    from .utils import fast_mode

    try:
        if a.cmd == "demo":
            from .demo import demo

            demo(fast=a.fast or fast_mode(), out=a.out)
        elif a.cmd == "train":
            from .distributed import environment, threads_per_process

            if environment() is not None:  # processes on one machine share its cores
                configure_threads(threads_per_process())
            from .train import train_from_config

            r = train_from_config(a.config, a.out, progress=not a.quiet)
            if r["rank"] == 0:
                last = r["last"]
                losses = ", ".join(f"{k} {last[k]:.4g}" for k in ("loss", "photo", "lmk", "speech", "expression"))
                n, k = r["steps"], r["processes"]
                print(
                    f"{r['model']}: {n} step{'s' * (n != 1)} in {k} process{'es' * (k != 1)}, "
                    f"{r['seconds']:.1f} s; last step {losses}; wrote {r['checkpoint']}"
                )
        elif a.cmd == "fit":
            from .fit import FitConfig, fit_video

            kw = {k: v for k, v in (("frame", a.frame), ("steps", a.steps)) if v is not None}
            cfg = FitConfig.fast(**kw) if a.fast or fast_mode() else FitConfig(**kw)
            r = fit_video(a.video, a.out, audio=a.audio, config=cfg, progress=not a.quiet)
            tr, un = r.report["trained"], r.report["untrained"]
            print(
                f"wrote {a.out}/ ({', '.join(p.name for p in r.paths.values())}) in "
                f"{sum(r.seconds.values()):.0f} s; held-out {tr['frames']} frames: PSNR {tr['psnr']:.2f} dB "
                f"(untrained {un['psnr']:.2f}), LMD {tr['lmd']:.2f} px (untrained {un['lmd']:.2f}), "
                f"lip sync r {tr['lip_sync']:.2f}"
            )
        elif a.cmd == "track":
            from .track import track_video

            tr = track_video(a.video, a.out, plot=a.plot, progress=not a.quiet, method=a.method)
            print(
                f"wrote {a.out}" + (f" and {a.plot}" if a.plot else "")
                + f": {len(tr)} frames at {tr.fps:g} fps, a face in {tr.n_found}"
            )  # fmt: skip
        else:
            from .demo import render_files

            path = render_files(a.audio, a.checkpoint, a.out, aus=a.aus, yaw=a.yaw, size=a.size, head=a.head,
                                portrait=a.portrait)  # fmt: skip
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
