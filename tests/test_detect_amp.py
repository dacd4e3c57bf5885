"""The dtype a detector's new layers train in (``--amp``), and that only training uses it."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ftedge.config import TrainConfig
from ftedge.detection.model import DetectionLayers, DetectorSpec
from ftedge.errors import FtedgeError
from ftedge.training import setup


@pytest.mark.parametrize("native", [True, False])
def test_auto_is_bf16_only_on_cpus_that_have_it(monkeypatch: pytest.MonkeyPatch, native: bool):
    monkeypatch.setattr(setup, "cpu_has_native_bf16", lambda: native)
    cfg = TrainConfig(task="detect")
    cpu = torch.device("cpu")
    assert setup.detection_amp(cfg, cpu) == (torch.bfloat16 if native else None)
    assert setup.detection_amp(dataclasses.replace(cfg, amp="off"), cpu) is None
    assert setup.detection_amp(dataclasses.replace(cfg, amp="bf16"), cpu) == torch.bfloat16
    with pytest.raises(FtedgeError, match="bf16 or float32"):
        setup.detection_amp(dataclasses.replace(cfg, amp="fp16"), cpu)


def test_bf16_training_outputs_are_float32_and_evaluation_stays_float32():
    torch.manual_seed(0)
    layers = DetectionLayers(DetectorSpec(num_classes=2, in_channels=(8, 16, 32), channels=16))
    feats = [torch.randn(2, c, s, s) for c, s in ((8, 8), (16, 4), (32, 2))]
    layers.eval()
    ref = layers(feats)
    layers.train_dtype = torch.bfloat16
    with torch.no_grad():
        same = layers(feats)  # eval: autocast is not used
    assert all(torch.equal(a, b) for a, b in zip(ref, same, strict=True))
    layers.train()
    layers.train_dtype = None
    f32 = layers(feats)
    layers.train_dtype = torch.bfloat16
    out = layers(feats)
    assert all(o.dtype == torch.float32 for o in out)
    # The same training pass in bf16: close to float32, not identical (8 bits of mantissa).
    for a, b in zip(out, f32, strict=True):
        assert not torch.equal(a, b)
        assert torch.allclose(a, b, atol=0.1, rtol=0.05)


def test_features_stored_in_bf16_train_exactly_as_float32_ones():
    """Under bf16 training the first layers cast their input to bf16: a cache kept in bf16
    (half the memory) gives bit-identical outputs and gradients."""
    torch.manual_seed(0)
    layers = DetectionLayers(DetectorSpec(num_classes=2, in_channels=(8, 16, 32), channels=16))
    layers.train()
    layers.train_dtype = torch.bfloat16
    feats = [torch.randn(2, c, s, s) for c, s in ((8, 8), (16, 4), (32, 2))]
    results = []
    for inputs in (feats, [f.to(torch.bfloat16) for f in feats]):
        layers.zero_grad()
        out = layers(inputs)
        sum(o.sum() for o in out).backward()
        results.append((out, [p.grad.clone() for p in layers.parameters()]))
    (out_a, grads_a), (out_b, grads_b) = results
    assert all(torch.equal(a, b) for a, b in zip(out_a, out_b, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(grads_a, grads_b, strict=True))
