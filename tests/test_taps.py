"""Taps: the head sees pooled mid-level feature maps beside the pooled features."""

from __future__ import annotations

import pytest
import torch

from ftedge.models import HeadSpec, build_classifier, resolve_backbone
from ftedge.models.classifier import TAP_SKIP, backbone_units, tap_names
from ftedge.training.tune import _scaling, fit_head, tune_head


def _lite0(taps: int = 3):
    return build_classifier(
        resolve_backbone("tf_efficientnet_lite0"), HeadSpec(3, taps=taps), pretrained=False
    ).model.eval()


def test_lite0_taps_are_the_three_stages_below_the_top_two():
    model = _lite0()
    assert model.taps == ("blocks.3", "blocks.4", "blocks.5")
    assert model.feature_groups == (1280, 80, 112, 192)
    assert model.num_features == 1664 == model.head[-1].in_features
    units = backbone_units(model.backbone)
    assert tap_names(model.backbone, 99) == tap_names(model.backbone, len(units) - TAP_SKIP)
    assert tap_names(model.backbone, 0) == ()


def test_features_are_the_pooled_features_then_each_tap_pooled():
    model = _lite0()
    bb = model.backbone
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        got = model.features(x)
        h = bb.bn1(bb.conv_stem(x))
        pooled = []
        for i, stage in enumerate(bb.blocks):
            h = stage(h)
            if i in (3, 4, 5):
                pooled.append(h.mean((2, 3)))
        want = torch.cat([bb(x), *pooled], 1)
        torch.testing.assert_close(got, want)
        torch.testing.assert_close(model(x), model.head(want))
    # The hooks lived for the call only.
    assert not any(m._forward_hooks for m in bb.modules())


def test_hooks_are_removed_when_the_backbone_fails():
    model = _lite0()
    with pytest.raises(RuntimeError):
        model.features(torch.randn(2, 5, 64, 64))  # 5 channels: the stem refuses
    assert not any(m._forward_hooks for m in model.backbone.modules())


def test_zero_taps_is_the_pooled_features_alone():
    model = _lite0(taps=0)
    assert model.taps == () and model.feature_groups == (1280,)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.features(x), model.backbone(x))


def test_a_backbone_without_feature_maps_gets_no_taps():
    built = build_classifier(
        resolve_backbone("timm:vit_tiny_patch16_224"), HeadSpec(3, taps=3), pretrained=False
    )
    assert built.model.taps == () and built.model.feature_groups == (192,)


def test_checkpoints_written_before_taps_read_as_no_taps():
    d = HeadSpec(4, (8,), 0.1, taps=3).to_dict()
    assert HeadSpec.from_dict(d).taps == 3
    del d["taps"]
    assert HeadSpec.from_dict(d) == HeadSpec(4, (8,), 0.1, taps=0)


def test_each_group_gets_the_same_share_of_the_energy():
    g = torch.Generator().manual_seed(0)
    # A wide group of small values and a narrow group of large ones.
    x = torch.cat(
        [torch.randn(50, 40, generator=g) * 0.01, torch.randn(50, 4, generator=g) * 30], 1
    )
    mean, std = _scaling(x, (40, 4))
    z = (x - mean) / std
    energy = [part.pow(2).sum(1).mean().item() for part in z.split((40, 4), 1)]
    assert energy == pytest.approx([22.0, 22.0], rel=1e-4)  # 44 features / 2 groups each
    # One group: the old rule, one common factor (mean squared feature value 1).
    mean1, std1 = _scaling(x)
    assert torch.unique(std1).numel() == 1
    assert ((x - mean1) / std1).pow(2).mean().item() == pytest.approx(1.0, rel=1e-4)


def test_group_scaling_is_folded_into_the_head_and_lets_a_small_group_count():
    g = torch.Generator().manual_seed(1)
    n, classes = 120, 3
    y = torch.arange(n) % classes
    # The label lives only in a narrow group of tiny values beside a wide group of loud noise.
    noise = torch.randn(n, 60, generator=g) * 10
    signal = torch.nn.functional.one_hot(y, classes).float() * 1e-3
    signal += torch.randn(n, classes, generator=g) * 2e-4
    x = torch.cat([noise, signal], 1)
    train, val = (x[:90], y[:90]), (x[90:], y[90:])
    grouped = tune_head(train, val, classes, seed=0, groups=(60, classes))
    assert grouped.chosen.accuracy == 1.0
    head = fit_head(grouped.chosen.candidate, *train, classes, 0, (60, classes))
    with torch.no_grad():  # the head works on raw features: the scaling is inside it
        assert (head(val[0]).argmax(1) == val[1]).float().mean().item() == 1.0
    ungrouped = tune_head(train, val, classes, seed=0)
    assert ungrouped.chosen.accuracy < grouped.chosen.accuracy


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime", "torch"])
def test_cached_features_with_taps_match_the_model(backend):
    from ftedge.training.features import FrozenExtractor

    model = _lite0()
    x = torch.randn(4, 3, 64, 64)
    with torch.inference_mode():
        ref = model.features(x)
        ex = FrozenExtractor(model.feature_module(), backend)
        ex(x)  # the first batch checks the fast path against torch
        assert ex.backend == backend
        got = ex(x)
    assert got.shape == (4, 1664)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "name, taps",
    [
        ("tv:resnet18", ("layer2.1", "layer3.0", "layer3.1")),
        ("tv:mobilenet_v2", ("features.14", "features.15", "features.16")),
        ("timm:mobilenetv3_small_100", ("blocks.2", "blocks.3", "blocks.4")),
    ],
)
def test_taps_follow_the_generic_block_rule_on_other_backbones(name, taps):
    model = build_classifier(
        resolve_backbone(name), HeadSpec(3, taps=3), pretrained=False
    ).model.eval()
    assert model.taps == taps
    with torch.no_grad():
        feats = model.features(torch.randn(2, 3, 96, 96))
    assert feats.shape == (2, sum(model.feature_groups)) and len(model.feature_groups) == 4
