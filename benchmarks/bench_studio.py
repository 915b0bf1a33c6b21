"""Latency of the expression studio: slider change → new image (a benchmark, not a test).

    python benchmarks/bench_studio.py [--size 256] [--n 24] [--model untrained|pretrained]

Drives the real widget (``widgets.expression_studio``) by setting ``.value`` on its
sliders, as a browser would, and times each change until the new PNG is in
``studio.image.value`` — the kernel-side latency (the browser adds a websocket round
trip and a PNG decode, ~ms on loopback). Kinds of change:

* ``au``    — an AU slider (re-encodes one CIT-AE window, one deform, one render);
* ``bias``  — an SZ-PAB bias slider (one deform, one render);
* ``frame`` — the frame scrubber (one deform, one render; the audio tokens are cached);
* ``yaw``   — the camera orbit (one render: the deformed head is cached).

Prints the core count, the median / p90 per kind, the ratio of each median to the
100 ms target, and a breakdown of one AU change (tokens, deform, render, PNG).
The model's size (not its training) sets the cost, so the default ``--model untrained``
(the default ``ModelConfig``) times the same work as a trained model without needing a
checkpoint; ``--model pretrained`` uses ``train.pretrained()``.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time

# the toolkit's thread policy, applied before torch is imported (as the CLI does)
from emozone_lite.threads import configure_threads

configure_threads()

import numpy as np  # noqa: E402
import torch  # noqa: E402

TARGET_MS = 100.0


def _timed_call(fn, *args):
    """``(milliseconds, result)`` of one call ``fn(*args)``."""
    tic = time.perf_counter()
    out = fn(*args)
    return 1e3 * (time.perf_counter() - tic), out


def _timed(fn, *args) -> float:
    return _timed_call(fn, *args)[0]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=256, help="render size in pixels")
    p.add_argument("--n", type=int, default=24, help="slider changes per kind (>= 20)")
    p.add_argument(
        "--model",
        choices=("pretrained", "untrained"),
        default="untrained",
        help="untrained (default): the default ModelConfig, no training needed; pretrained: "
        "train.pretrained() (cached; trains first if missing; EMOZONE_FAST=1 picks the fast run)",
    )
    p.add_argument("--audio", default="arctic_a0007.wav")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads for torch and numba (Studio(threads=...), set once for the process); 0 = leave them",
    )
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.n < 20:
        p.error("--n must be at least 20")

    import numba

    from emozone_lite import aus as aus_mod
    from emozone_lite.attention import MODALITY_NAMES
    from emozone_lite.widgets import ZONE_ORDER, Studio, expression_studio, png_bytes

    if a.model == "pretrained":
        from emozone_lite.train import pretrained

        model = pretrained(progress=False)
    else:
        from emozone_lite.head import load_head
        from emozone_lite.model import EmoZoneLite, ModelConfig

        torch.manual_seed(a.seed)
        model = EmoZoneLite(ModelConfig(), load_head()).eval()

    print(
        f"cores: os.cpu_count()={os.cpu_count()}, torch threads={torch.get_num_threads()}, "
        f"numba threads={numba.get_num_threads()}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}, "
        f"load average={os.getloadavg()[0]:.1f}"
    )
    print(f"model: {model.config.name}, {model.n_gaussians} Gaussians; render {a.size}x{a.size}")
    tic = time.perf_counter()
    studio = expression_studio(size=a.size, studio=Studio(model, a.audio, threads=a.threads or None))
    print(
        f"studio computes with threads={studio.studio.threads or 'unchanged'} (torch {torch.get_num_threads()}, "
        f"numba {numba.get_num_threads()}; set once, not per update)"
    )
    print(
        f"studio built in {time.perf_counter() - tic:.1f} s (encode the clip once, warm-up render); "
        f"continuous_update={studio.continuous_update}"
    )

    rng = random.Random(a.seed)
    T = studio.studio.n_frames
    au_names = list(aus_mod.AU_NAMES)
    bias_keys = [(z, m) for z in ZONE_ORDER for m in MODALITY_NAMES]

    def change(kind: str) -> None:
        if kind == "au":
            s = studio.au_sliders[rng.choice(au_names)]
            v = s.value
            while abs(v - s.value) < 0.05:
                v = round(rng.uniform(0, 5), 1)
            s.value = v
        elif kind == "bias":
            if not studio.studio.has_bias:
                studio.yaw.value = rng.choice([-30.0, 30.0])  # no bias table: nothing to time
                return
            s = studio.bias_sliders[rng.choice(bias_keys)]
            step = rng.choice([-1.5, 1.5])
            step = -step if not -8 <= s.value + step <= 8 else step
            s.value = round(s.value + step, 1)
        elif kind == "frame":
            studio.frame.value = (studio.frame.value + rng.randrange(1, T)) % T
        else:
            v = studio.yaw.value
            while v == studio.yaw.value:
                v = float(rng.randrange(-60, 61, 3))
            studio.yaw.value = v

    kinds = ("au", "bias", "frame", "yaw")
    for k in kinds:  # warm-up of every path
        change(k)
    times: dict[str, list[float]] = {k: [] for k in kinds}
    order = [k for k in kinds for _ in range(a.n)]
    rng.shuffle(order)
    for k in order:
        before = studio.n_updates
        ms = _timed(change, k)
        if studio.n_updates != before + 1:
            raise RuntimeError(f"a {k} change did not trigger exactly one update")
        times[k].append(ms)

    print(f"\nslider change -> new image (median over {a.n} changes each; target {TARGET_MS:.0f} ms, aim 33 ms)")
    print(f"{'kind':<7}{'median ms':>11}{'p90 ms':>9}{'ratio to target':>17}")
    result = {}
    for k in kinds:
        med = statistics.median(times[k])
        p90 = float(np.percentile(times[k], 90))
        result[k] = med
        print(f"{k:<7}{med:>11.1f}{p90:>9.1f}{med / TARGET_MS:>17.2f}")
    allt = [x for v in times.values() for x in v]
    overall = statistics.median(allt)
    result["all"] = overall
    print(f"{'all':<7}{overall:>11.1f}{float(np.percentile(allt, 90)):>9.1f}{overall / TARGET_MS:>17.2f}")

    # breakdown of one AU change (pure compute of the Studio)
    st = studio.studio
    t = T // 2
    parts: dict[str, list[float]] = {"AU tokens": [], "deform": [], "render": [], "PNG": []}
    for i in range(a.n):
        aus = st.frame_aus(t)
        aus[i % 17] = 1.0 + (i % 7) * 0.5
        st.clear_cache()
        ms, u = _timed_call(st.au_tokens_at, t, aus)
        parts["AU tokens"].append(ms)
        with torch.no_grad():
            ms, stt = _timed_call(model.deform, st.audio_tokens[t : t + 1], u[None])
        parts["deform"].append(ms)
        ms, img = _timed_call(st.render_state, stt, 0.0, a.size)
        parts["render"].append(ms)
        parts["PNG"].append(_timed(png_bytes, img))
    print(
        "\nbreakdown of an AU change (median ms): "
        + ", ".join(f"{k} {statistics.median(v):.1f}" for k, v in parts.items())
    )
    print(f"load average after: {os.getloadavg()[0]:.1f} (other processes share these cores)")
    return result


if __name__ == "__main__":
    main()
