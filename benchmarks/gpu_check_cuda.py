"""The CUDA memory part of ``gpu_check.py`` (run in its ``--child cuda-memory`` process).

Both backends of ``ftedge.runtime.cuda`` (cuda-python and the ctypes libcudart fallback) copy a
known array host -> device -> host on a stream, timed with events.
"""

from __future__ import annotations

from typing import Any


def round_trips(nbytes: int = 64 << 20) -> dict[str, Any]:
    """With each backend: a known array host -> device -> host on a stream, timed with events."""
    import numpy as np

    from ftedge.runtime.cuda import load_cuda

    host = np.random.default_rng(0).integers(0, 256, nbytes, dtype=np.uint8)
    out: dict[str, Any] = {}
    for prefer in ("cuda-python", "ctypes"):  # load_cuda(prefer) uses that backend only
        try:
            cuda = load_cuda(prefer)
            cuda.set_device(0)
            back = np.zeros_like(host)
            ptr, stream = cuda.malloc(nbytes), cuda.stream_create()
            ev = [cuda.event_create() for _ in range(3)]
            cuda.event_record(ev[0], stream)
            cuda.memcpy_htod_async(ptr, host, stream)
            cuda.event_record(ev[1], stream)
            cuda.memcpy_dtoh_async(back, ptr, stream)
            cuda.event_record(ev[2], stream)
            cuda.stream_synchronize(stream)
            cuda.event_synchronize(ev[2])
            ms = [cuda.event_elapsed_ms(ev[0], ev[1]), cuda.event_elapsed_ms(ev[1], ev[2])]
            for e in ev:
                cuda.event_destroy(e)
            cuda.stream_destroy(stream)
            cuda.free(ptr)
        except Exception as e:  # recorded, not raised: the other backend still runs
            out[prefer] = {"equal": False, "error": f"{type(e).__name__}: {e}"}
            continue
        r = {"backend": cuda.backend, "device": cuda.device_info(0).name, "bytes": nbytes}
        r |= {"runtime_version": cuda.runtime_version(), "h2d_ms": ms[0], "d2h_ms": ms[1]}
        gbs = [round(nbytes / max(t, 1e-6) / 1e6, 1) for t in ms]
        r |= {"h2d_gb_s": gbs[0], "d2h_gb_s": gbs[1]}
        out[prefer] = r | {"equal": bool(np.array_equal(host, back))}
    return out
