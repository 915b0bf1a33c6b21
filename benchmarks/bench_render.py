"""Benchmark of emozone_lite.render: the numba "cpu" backend against the pure-torch twin.

Usage::

    python benchmarks/bench_render.py [--quick]

Renders a face-shaped blob of N Gaussians (5k, 20k, 50k) at 256×256 — points on
MediaPipe's canonical face mesh, scales 0.5–2 % of the face, opacities 0.5–1 — and
prints one table of median wall-clock times (forward, forward + backward) for both
backends, the speed-up, and whether the targets for 20k Gaussians are met:
cpu forward ≤ 50 ms, forward + backward ≤ 150 ms, ≥ 10× faster than torch.

Then the shipped portrait (``data_samples/portrait.ply``: face head + hair, neck, torso and
background, SH degree 1) seen from its photo's camera at 256² and 512², forward and forward +
backward (gradients of every Gaussian parameter and the SH coefficients), cpu vs torch twin,
and its targets at 256²: cpu forward ≤ 33 ms, forward + backward ≤ 100 ms.

The CPU time of the process is printed beside the wall time: on a machine shared
with other jobs the two differ, and the load average tells how busy it was.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emozone_lite.threads import configure_threads

configure_threads()  # OMP_WAIT_POLICY=PASSIVE unless set: before torch loads OpenMP

import torch  # noqa: E402

from emozone_lite.camera import Camera  # noqa: E402
from emozone_lite.landmarks import load_canonical_mesh  # noqa: E402
from emozone_lite.render import rasterize  # noqa: E402

TARGET_N = 20_000
TARGET_FWD_MS = 50.0
TARGET_FWD_BWD_MS = 150.0
TARGET_SPEEDUP = 10.0


def face_blob(n: int, seed: int = 0, size: int = 256):
    """``n`` Gaussians on the canonical face surface and a front-ish camera."""
    g = torch.Generator().manual_seed(seed)
    mesh = load_canonical_mesh()
    V = torch.from_numpy(mesh.vertices).float()
    F = torch.from_numpy(mesh.triangles).long()
    a, b, c = V[F[:, 0]], V[F[:, 1]], V[F[:, 2]]
    area = torch.linalg.cross(b - a, c - a).norm(dim=-1)
    tri = torch.multinomial(area, n, replacement=True, generator=g)
    u = torch.rand(n, 2, generator=g)
    flip = u.sum(-1) > 1
    u[flip] = 1 - u[flip]
    means = a[tri] + u[:, :1] * (b[tri] - a[tri]) + u[:, 1:] * (c[tri] - a[tri])
    extent = float((V.max(0).values - V.min(0).values).max())
    scales = extent * torch.exp(torch.empty(n, 3).uniform_(math.log(0.005), math.log(0.02), generator=g))
    quats = torch.randn(n, 4, generator=g)
    opacities = torch.empty(n).uniform_(0.5, 1.0, generator=g)
    colors = torch.rand(n, 3, generator=g)
    cam = Camera.orbit(yaw_deg=15, pitch_deg=5, width=size, height=size)
    return (means, quats, scales, opacities, colors), cam


def measure(fn, reps: int, warmup: int) -> tuple[float, float]:
    """Median wall and CPU time of ``fn()`` in ms."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return 1e3 * statistics.median(wall), 1e3 * statistics.median(cpu)


def bench(n: int, backend: str, reps: int, warmup: int, size: int = 256) -> dict[str, tuple[float, float]]:
    params, cam = face_blob(n, size=size)
    params = [p.clone().requires_grad_(True) for p in params]
    viewmats, Ks = cam.viewmat[None], cam.K[None]
    weights = torch.rand(1, size, size, 3, generator=torch.Generator().manual_seed(1))

    def forward():
        return rasterize(*params, viewmats, Ks, size, size, backend=backend)

    def forward_backward():
        img, alpha, _ = forward()
        ((img * weights).sum() + alpha.sum()).backward()
        for p in params:
            p.grad = None

    return {"fwd": measure(forward, reps, warmup), "fwd+bwd": measure(forward_backward, reps, warmup)}


PORTRAIT_FWD_MS = 33.0
PORTRAIT_FWD_BWD_MS = 100.0


def bench_portrait(backend: str, size: int, reps: int, warmup: int) -> dict[str, tuple[float, float]]:
    from emozone_lite.head.portrait import load_portrait, sh_coefficients

    p = load_portrait()
    cam = p.view(size=size)
    c = p.cloud
    params = [t.detach().clone().requires_grad_(True) for t in (c.means, c.quats, c.scales, c.opacities)]
    sh = sh_coefficients(c, 1).detach().clone().requires_grad_(True)
    weights = torch.rand(1, size, size, 3, generator=torch.Generator().manual_seed(1))
    bg = torch.ones(1, 3)

    def forward():
        return rasterize(*params, sh, cam.viewmat[None], cam.K[None], size, size, backend=backend, backgrounds=bg,
                         sh_degree=1)  # fmt: skip

    def forward_backward():
        img, alpha, _ = forward()
        ((img * weights).sum() + alpha.sum()).backward()
        for t in (*params, sh):
            t.grad = None

    return {"fwd": measure(forward, reps, warmup), "fwd+bwd": measure(forward_backward, reps, warmup), "n": len(c)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, skip the torch backend at 50k")
    args = parser.parse_args(argv)

    import numba

    sizes = [5_000, 20_000, 50_000]
    cpu_reps, cpu_warmup = (5, 1) if args.quick else (9, 2)
    torch_reps, torch_warmup = (1, 0) if args.quick else (3, 1)
    cores = os.cpu_count()
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    print(
        f"cores: {cores} (usable: {affinity}); torch threads: {torch.get_num_threads()}; "
        f"numba threads: {numba.get_num_threads()}; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}"
    )
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    bench(2_000, "cpu", 1, 1, size=64)  # compile / load the numba kernels outside the timings
    print(f"numba threading layer: {numba.threading_layer()}")
    mode = "quick" if args.quick else "full"
    print(
        f"mode: {mode}; cpu: {cpu_warmup} warm-up + {cpu_reps} reps, torch: {torch_warmup} warm-up + "
        f"{torch_reps} reps; 256x256, 1 camera, RGB; times are medians, 'cpu ms' is process CPU time\n"
    )

    header = f"{'N':>7} | {'backend':7} | {'fwd ms':>8} {'(cpu ms)':>9} | {'fwd+bwd ms':>10} {'(cpu ms)':>9}"
    print(header)
    print("-" * len(header))
    results: dict[tuple[int, str], dict[str, tuple[float, float]]] = {}
    for n in sizes:
        results[(n, "cpu")] = bench(n, "cpu", cpu_reps, cpu_warmup)
        if not (args.quick and n > TARGET_N):
            results[(n, "torch")] = bench(n, "torch", torch_reps, torch_warmup)
        for backend in ("cpu", "torch"):
            r = results.get((n, backend))
            if r is None:
                print(f"{n:>7} | {backend:7} | {'skipped (--quick)':>41}")
                continue
            print(
                f"{n:>7} | {backend:7} | {r['fwd'][0]:8.1f} {r['fwd'][1]:9.1f} | "
                f"{r['fwd+bwd'][0]:10.1f} {r['fwd+bwd'][1]:9.1f}"
            )
        if (n, "torch") in results:
            c, t = results[(n, "cpu")], results[(n, "torch")]
            print(
                f"{n:>7} | speed-up| {t['fwd'][0] / c['fwd'][0]:7.1f}x {'':9} | "
                f"{t['fwd+bwd'][0] / c['fwd+bwd'][0]:9.1f}x"
            )
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    c, t = results[(TARGET_N, "cpu")], results[(TARGET_N, "torch")]
    speedup = min(t["fwd"][0] / c["fwd"][0], t["fwd+bwd"][0] / c["fwd+bwd"][0])
    checks = [
        (f"cpu forward at {TARGET_N // 1000}k <= {TARGET_FWD_MS:.0f} ms", c["fwd"][0], c["fwd"][0] <= TARGET_FWD_MS),
        (
            f"cpu forward+backward at {TARGET_N // 1000}k <= {TARGET_FWD_BWD_MS:.0f} ms",
            c["fwd+bwd"][0],
            c["fwd+bwd"][0] <= TARGET_FWD_BWD_MS,
        ),
        (
            f"cpu >= {TARGET_SPEEDUP:.0f}x faster than torch at {TARGET_N // 1000}k (both passes)",
            speedup,
            speedup >= TARGET_SPEEDUP,
        ),
    ]
    print("\nthe shipped portrait (data_samples/portrait.ply), its photo's camera, SH degree 1:")
    header = f"{'size':>7} | {'backend':7} | {'fwd ms':>8} {'(cpu ms)':>9} | {'fwd+bwd ms':>10} {'(cpu ms)':>9}"
    print(header)
    print("-" * len(header))
    portrait = {}
    for size in (256, 512):
        for backend in ("cpu", "torch"):
            reps, warm = (cpu_reps, cpu_warmup) if backend == "cpu" else (torch_reps, torch_warmup)
            if args.quick and backend == "torch" and size == 512:
                print(f"{size:>7} | {backend:7} | {'skipped (--quick)':>41}")
                continue
            r = portrait[(size, backend)] = bench_portrait(backend, size, reps, warm)
            print(f"{size:>7} | {backend:7} | {r['fwd'][0]:8.1f} {r['fwd'][1]:9.1f} | "
                  f"{r['fwd+bwd'][0]:10.1f} {r['fwd+bwd'][1]:9.1f}")  # fmt: skip
        if (size, "torch") in portrait:
            c, t = portrait[(size, "cpu")], portrait[(size, "torch")]
            print(f"{size:>7} | speed-up| {t['fwd'][0] / c['fwd'][0]:7.1f}x {'':9} | "
                  f"{t['fwd+bwd'][0] / c['fwd+bwd'][0]:9.1f}x")  # fmt: skip
    pc = portrait[(256, "cpu")]
    n_p = pc["n"]
    checks += [
        (f"portrait ({n_p} Gaussians) cpu forward at 256² <= {PORTRAIT_FWD_MS:.0f} ms", pc["fwd"][0],
         pc["fwd"][0] <= PORTRAIT_FWD_MS and n_p >= 50_000),
        (f"portrait cpu forward+backward at 256² <= {PORTRAIT_FWD_BWD_MS:.0f} ms", pc["fwd+bwd"][0],
         pc["fwd+bwd"][0] <= PORTRAIT_FWD_BWD_MS and n_p >= 50_000),
    ]  # fmt: skip
    print("\ntargets (the portrait's also need >= 50k Gaussians):")
    for name, value, ok in checks:
        unit = "x" if "faster" in name else " ms"
        print(f"  [{'met' if ok else 'NOT met'}] {name}: {value:.1f}{unit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
