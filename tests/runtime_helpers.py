"""Build a small real bundle for runtime tests: ONNX (float + baked uint8 BGR) and OpenVINO IR.

Made directly from a trained run with torch.onnx.export + a Manifest (the same contract
``ftedge export`` writes), so runtime tests do not depend on every export step.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def build_test_bundle(run_dir: Path, dest: Path) -> Path:
    """Export ``run_dir``'s best checkpoint into a bundle directory at ``dest``."""
    import torch
    from torch import nn

    from ftedge.checkpoint import load_checkpoint
    from ftedge.data.folders import DatasetSplits
    from ftedge.files import sha256_file
    from ftedge.runtime.manifest import Manifest
    from ftedge.runtime.preprocess import PreprocessSpec, preprocess_file

    ck = load_checkpoint(run_dir)
    meta = ck.meta
    spec = PreprocessSpec.from_dict(meta["preprocessing"])
    model = ck.model.eval()
    c, h, w = spec.input_size
    dest.mkdir(parents=True, exist_ok=True)

    class Baked(nn.Module):
        """uint8 NHWC BGR in -> logits: the normalisation inside the graph."""

        def __init__(self) -> None:
            super().__init__()
            self.net = model
            self.mean = nn.Buffer(torch.tensor(spec.mean).view(1, 3, 1, 1) * 255.0)
            self.std = nn.Buffer(torch.tensor(spec.std).view(1, 3, 1, 1) * 255.0)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x.permute(0, 3, 1, 2).flip(1).float()  # NHWC BGR -> NCHW RGB
            out: torch.Tensor = self.net((x - self.mean) / self.std)
            return out

    def export(mod: nn.Module, example: torch.Tensor, rel: str) -> None:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        torch.onnx.export(
            mod,
            (example,),
            str(dest / rel),
            dynamo=False,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )

    export(model, torch.zeros(1, c, h, w), "onnx/model.onnx")
    export(Baked().eval(), torch.zeros(1, h, w, 3, dtype=torch.uint8), "onnx/model_uint8.onnx")

    import openvino as ov

    (dest / "openvino").mkdir(exist_ok=True)
    ov.save_model(
        ov.convert_model(str(dest / "onnx/model.onnx")),
        str(dest / "openvino/model.xml"),
        compress_to_fp16=False,
    )

    splits = DatasetSplits.load(Path(run_dir) / "splits.json")
    test = [(splits.abspath(s), s.label) for s in splits.test]
    with torch.inference_mode():
        x = torch.from_numpy(np.stack([preprocess_file(p, spec) for p, _ in test]))
        ref = model(x).numpy()
    np.save(dest / "reference_logits.npy", ref)
    acc = float((ref.argmax(1) == np.array([y for _, y in test])).mean())

    float_in = {"name": "input", "dtype": "float32", "layout": "NCHW", "shape": [-1, c, h, w]}
    out = {"name": "logits", "kind": "logits"}

    def art(fmt: str, files: list[str], **kw: object) -> dict[str, object]:
        digests = {f: sha256_file(dest / f) for f in files}
        return dict(
            format=fmt,
            precision="fp32",
            path=files[0],
            sha256=digests[files[0]],
            files=digests,
            output=out,
            accuracy=acc,
            **kw,
        )

    ckpt = {"path": str(ck.json_path.resolve())}
    manifest = Manifest.from_dict(
        dict(
            schema_version=2,
            labels=list(meta["classes"]),
            preprocessing=spec.to_dict(),
            input=float_in,
            output=out,
            provenance={"checkpoint": ckpt, "source": "tests"},
            data={"root": splits.root, "test": [[s.path, s.label] for s in splits.test]},
            reference={"accuracy": acc, "logits": "reference_logits.npy"},
            artifacts=[
                art("openvino", ["openvino/model.xml", "openvino/model.bin"], input=float_in),
                art("onnx", ["onnx/model.onnx"], input=float_in),
                art(
                    "onnx",
                    ["onnx/model_uint8.onnx"],
                    input={
                        "name": "input",
                        "dtype": "uint8",
                        "layout": "NHWC",
                        "shape": [-1, h, w, 3],
                        "color": "bgr",
                    },
                ),
                dict(
                    format="onnx",
                    precision="int8",
                    path="onnx/model_int8.onnx",
                    status="failed",
                    message="accuracy gate failed (test fixture)",
                ),
            ],
        )
    )
    manifest.save(dest)
    json.loads((dest / "manifest.json").read_text())  # sanity: valid JSON
    return dest
