"""Where the time of one camera frame goes: a per-stage profile of ``Classifier.classify``.

    python benchmarks/frame_profile.py bundles/latest [--threads 1] [--rounds 300]

On 640x480 BGR frames (synthetic, camera-like, made in memory) and the artifact ``load()``
picks (or ``--precision``/``--backend``), every stage is timed on its own, in interleaved
rounds (one call of each stage per round, so a load change on a shared machine hits them
alike), and the medians are printed in microseconds:

- exact path: Pillow resize of the whole frame + centre crop, then normalisation;
- the fast path before (one ``INTER_AREA`` resize of the crop window; BGR->RGB, stack and a
  fresh normalised array) and now (the two-step OpenCV resize or Pillow's window resample into
  a reused buffer; normalisation fused with the channel swap into a reused buffer);
- the runner: ``InferRequest.infer(dict)`` as before, the bare inference on a request whose
  input tensor already wraps the batch (what ``ftedge benchmark --mode compute`` times), and
  ``runner.infer`` now (the bound buffer is reused);
- softmax + top-k, and the end-to-end ``classify`` with each ``preprocessing=`` choice.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

PATHS = ("exact", "auto", "fast")


def camera_frames(n: int, width: int = 640, height: int = 480) -> list[np.ndarray]:
    """Camera-like BGR frames: smooth gradients plus sensor noise."""
    from ftedge.runtime.bench_inputs import synthetic_frames

    return synthetic_frames(n, width, height)


def _stages(clf: Any, frames: list[np.ndarray]) -> dict[str, Callable[[], Any]]:
    import cv2

    from ftedge.runtime.fast_preprocess import FastPreprocessor, crop_window
    from ftedge.runtime.prediction import softmax, top_k
    from ftedge.runtime.preprocess import normalize, resize_crop, to_pil

    spec = clf.spec
    cvf, pil = FastPreprocessor(spec, "opencv"), FastPreprocessor(spec, "pillow")
    frame = frames[0]
    win = crop_window(frame.shape[1], frame.shape[0], spec)
    x0, y0 = int(round(win.left)), int(round(win.top))
    window = frame[y0 : y0 + int(round(win.height)), x0 : x0 + int(round(win.width))]
    crop = cvf.crop(frame, "bgr")
    batch = crop[None]
    x = np.ascontiguousarray(normalize(batch, spec))
    runner, name = clf.runner, clf.input_name
    logits = np.zeros((1, len(clf.labels)), np.float32)
    stages: dict[str, Callable[[], Any]] = {
        "exact: Pillow resize of the frame + crop": lambda: resize_crop(to_pil(frame, "bgr"), spec),
        "exact: normalise": lambda: normalize(batch, spec),
        "before: cv2 INTER_AREA of the window": lambda: cv2.resize(
            window, (spec.width, spec.height), interpolation=cv2.INTER_AREA
        ),
        "before: BGR->RGB + stack + normalise": lambda: cvf.normalize(np.stack([crop[:, :, ::-1]])),
        "fast:opencv resize of the window": lambda: cvf._crop_image(frame),
        "fast:pillow resize of the window": lambda: pil._crop_image(frame),
        "fused normalise (BGR) into the buffer": lambda: cvf.normalize_into(batch, "bgr"),
    }
    request = getattr(runner, "_request", None)
    if runner.backend == "openvino" and request is not None:
        import openvino as ov

        stages["before: request.infer(dict)"] = lambda: request.infer({name: x}, share_inputs=True)
        stages["inference only (tensor in place)"] = lambda: (
            request.set_tensor(name, ov.Tensor(x, shared_memory=True)),
            request.infer(),
        )
    stages["runner.infer (bound buffer)"] = lambda: runner.infer({name: x}, check=False)
    stages["softmax + top-k"] = lambda: top_k(softmax(logits)[0], clf.labels, 5)
    return stages


def profile(bundle: str, threads: int | None, rounds: int, **load_kw: Any) -> dict[str, Any]:
    """Median microseconds per stage and per end-to-end variant, interleaved rounds."""
    from ftedge.runtime import load

    frames = camera_frames(8)
    models = {m: load(bundle, threads=threads, preprocessing=m, **load_kw) for m in PATHS}
    stages = _stages(models["exact"], frames)
    for m, clf in models.items():
        stages[f"end to end: classify, {m} ({clf.preprocessing})"] = functools.partial(
            clf.classify, frames[0], 5, "bgr"
        )
    times: dict[str, list[float]] = {k: [] for k in stages}
    for _ in range(20):  # warm-up
        for fn in stages.values():
            fn()
    for _ in range(rounds):
        for name, fn in stages.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    clf = models["auto"]
    return {
        "artifact": clf.artifact.name,
        "backend": clf.backend,
        "auto_preprocessing": clf.preprocessing,
        "threads": threads,
        "rounds": rounds,
        "load_average": os.getloadavg(),
        "median_us": {k: float(np.median(v) * 1e6) for k, v in times.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", nargs="?", default="bundles/latest")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--precision")
    ap.add_argument("--json", help="also write the result here")
    a = ap.parse_args()
    res = profile(a.bundle, a.threads, a.rounds, backend=a.backend, precision=a.precision)
    width = max(len(k) for k in res["median_us"])
    print(f"{res['artifact']} on {res['backend']}, threads {a.threads}, load {res['load_average']}")
    for k, v in res["median_us"].items():
        print(f"  {k:<{width}}  {v:8.1f} us")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
