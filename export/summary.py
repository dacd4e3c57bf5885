"""The export summary: one row per artifact, as a printed table or as JSON rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftedge.runtime.manifest import Artifact, Manifest


def artifact_size(bundle_dir: Path, artifact: Artifact) -> int | None:
    """Bytes of every file of the artifact present in the bundle (None when none is)."""
    sizes = [(bundle_dir / f).stat().st_size for f in artifact.files if (bundle_dir / f).is_file()]
    return sum(sizes) if sizes else None


def summary_rows(manifest: Manifest, bundle_dir: Path | None = None) -> list[dict[str, Any]]:
    """One row per artifact for the table / --json."""
    rows = []
    for a in manifest.artifacts:
        rows.append(
            {
                "artifact": a.name,
                "format": a.format,
                "precision": a.precision,
                "status": a.status,
                "path": a.path,
                "accuracy": a.accuracy,
                "accuracy_drop": a.accuracy_drop,
                "max_abs_diff": a.parity.max_abs_diff if a.parity else None,
                "top1_agreement": a.parity.top1_agreement if a.parity else None,
                "execution_precision": a.parity.execution_precision if a.parity else None,
                "size_bytes": artifact_size(bundle_dir, a) if bundle_dir else None,
                "export_seconds": a.details.get("export_seconds"),
                "message": a.message,
            }
        )
    return rows


def format_table(manifest: Manifest, bundle_dir: Path | None = None) -> str:
    """The printed summary table."""
    head = f"{'artifact':<22}{'status':<9}{'acc':>7}{'drop pt':>9}{'max|diff|':>11}{'top1 agr':>10}{'size MB':>9}{'sec':>7}"
    lines = [head, "-" * len(head)]
    ref = manifest.reference.accuracy
    if ref is not None:
        lines.append(
            f"{'pytorch (reference)':<22}{'ok':<9}{ref * 100:>6.2f}%{'':>9}{'':>11}{'':>10}{'':>9}{'':>7}"
        )
    for a in manifest.artifacts:
        lines.append(_table_row(a, bundle_dir))
    return "\n".join(lines)


def _table_row(a: Artifact, bundle_dir: Path | None) -> str:
    nbytes = artifact_size(bundle_dir, a) if bundle_dir is not None else None
    size = f"{nbytes / 1e6:.2f}" if nbytes is not None else ""
    acc = f"{a.accuracy * 100:.2f}%" if a.accuracy is not None else "-"
    drop = f"{a.accuracy_drop:+.2f}" if a.accuracy_drop is not None else "-"
    diff = a.parity.max_abs_diff if a.parity else None
    agr = a.parity.top1_agreement if a.parity else None
    sec = a.details.get("export_seconds")
    return (
        f"{a.name:<22}{a.status:<9}{acc:>7}{drop:>9}"
        f"{(f'{diff:.1e}' if diff is not None else '-'):>11}"
        f"{(f'{agr * 100:.1f}%' if agr is not None else '-'):>10}{size:>9}"
        f"{(f'{sec:.1f}' if sec is not None else '-'):>7}"
    )
