"""The trained model's test-split logits, stored in the run directory for the export to reuse.

Training already computes the best checkpoint's logits on the whole test split; ``ftedge
export`` needs exactly these as the reference every artifact is compared with. Storing them
(``test_logits.npy`` + ``test_logits.json``) saves the export a full backbone pass. The sidecar
binds them to the checkpoint's weights (sha256), the test list and the preprocessing; a reader
gets them only when all three still match, and the export spot-checks them against a fresh
PyTorch pass before use (``ftedge.export.run_source``). Only float32 runs on one CPU process
store them: autocast or TF32 logits on a GPU are not a reference for FP32 artifacts.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ftedge.files import atomic_write_bytes, atomic_write_text, sha256_file

LOGITS_FILE = "test_logits.npy"
SIDECAR_FILE = "test_logits.json"
SCHEMA_VERSION = 1


def samples_sha256(samples: Sequence[tuple[str, int]]) -> str:
    """A digest of a (path, label) list, order included."""
    text = json.dumps([[str(p), int(y)] for p, y in samples])
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class StoredReference:
    """Test logits read back from a run, and how they were computed."""

    logits: np.ndarray
    record: dict[str, Any]


def write_reference(
    run_dir: Path,
    logits: np.ndarray,
    weights_sha256: str,
    test: Sequence[tuple[str, int]],
    preprocessing: dict[str, Any],
    computed_by: dict[str, Any],
) -> None:
    """Store ``logits`` (the checkpoint with ``weights_sha256`` on ``test``), atomically."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(logits, dtype=np.float32))
    atomic_write_bytes(run_dir / LOGITS_FILE, buf.getvalue())
    record = {
        "schema_version": SCHEMA_VERSION,
        "logits": LOGITS_FILE,
        "logits_sha256": sha256_file(run_dir / LOGITS_FILE),
        "weights_sha256": weights_sha256,
        "test_sha256": samples_sha256(test),
        "images": len(test),
        "preprocessing": preprocessing,
        "computed_by": computed_by,
    }
    # The sidecar is written last: without it (a kill in between) the logits are never read.
    atomic_write_text(run_dir / SIDECAR_FILE, json.dumps(record, indent=2) + "\n")


def read_reference(
    run_dir: Path,
    weights_sha256: str | None,
    test: Sequence[tuple[str, int]],
    preprocessing: dict[str, Any],
) -> tuple[StoredReference | None, str]:
    """The stored logits when they belong to these weights, test list and preprocessing;
    else None and why (a missing reference is not an error: it is computed instead)."""
    side = run_dir / SIDECAR_FILE
    if not side.is_file():
        return None, "the run stores no test logits"
    try:
        record = json.loads(side.read_text())
        path = run_dir / LOGITS_FILE
        expected = {
            "schema_version": SCHEMA_VERSION,
            "weights_sha256": weights_sha256,
            "test_sha256": samples_sha256(test),
            "preprocessing": preprocessing,
        }
        stale = [k for k, v in expected.items() if record.get(k) != v]
        if stale:
            return None, f"stored test logits are stale ({', '.join(stale)} changed)"
        if not path.is_file() or sha256_file(path) != record["logits_sha256"]:
            return None, "stored test logits do not match their sha256"
        logits = np.load(path, allow_pickle=False)
    except (OSError, ValueError, KeyError, TypeError) as e:
        return None, f"unreadable stored test logits ({e})"
    if logits.ndim != 2 or len(logits) != len(test) or logits.dtype != np.float32:
        return None, f"stored test logits have shape {logits.shape}, not ({len(test)}, classes)"
    return StoredReference(logits, record), ""
