"""The short table printed at the end of ``ftedge train``."""

from __future__ import annotations

from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from ftedge.training.loop import TrainResult


def print_summary(result: TrainResult, file: IO[str]) -> None:
    m = result.metrics
    test = m["test"]
    worst = min(test["per_class"].items(), key=lambda kv: kv[1]["recall"])
    rows = [
        ("run", str(result.run_dir)),
        (
            "data",
            f"{m['data']['root']} ({m['data']['train']}/{m['data']['val']}/{m['data']['test']} train/val/test, {m['data']['skipped']} skipped)",
        ),
        ("epochs run", f"{len(m['epochs'])}{' (early stop)' if m['stopped_early'] else ''}"),
        ("best epoch", f"{m['best_epoch']} (val accuracy {m['best_val_accuracy']:.4f})"),
        ("test accuracy", f"{result.test_accuracy:.4f}"),
        ("weakest class", f"{worst[0]} (recall {worst[1]['recall']:.3f})"),
        ("cached features", "yes" if m["cached_features"] else "no"),
        ("device / amp", f"{m['device']} / {m['amp']} (x{m['world_size']} processes)"),
        ("train time", f"{m['total_seconds']:.1f} s (features {m['feature_seconds']:.1f} s)"),
    ]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows), file=file)
    print(f"next: ftedge export {result.run_dir}", file=file)
