"""Backbones: offline pretrained weights are right, head surgery and freezing are generic."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from ftedge.errors import FtedgeError
from ftedge.models import HeadSpec, build_classifier, create_backbone, resolve_backbone
from ftedge.models.classifier import backbone_units


def test_offline_default_gives_right_imagenet_answers_on_real_photos():
    from skimage import data
    from timm.data import ImageNetInfo

    from ftedge.data.transforms import eval_transform

    model, spec = create_backbone(resolve_backbone("tf_efficientnet_lite0"))
    assert spec.mean == (0.5, 0.5, 0.5) and spec.interpolation == "bicubic"
    model.eval()
    info = ImageNetInfo()
    tf = eval_transform(spec)

    def top1(photo) -> str:
        with torch.inference_mode():
            return info.index_to_description(int(model(tf(Image.fromarray(photo))[None]).argmax()))

    assert top1(data.chelsea()) in {"tabby, tabby cat", "tiger cat", "Egyptian cat"}
    assert top1(data.coffee()) == "espresso"


@pytest.mark.parametrize(
    "name, library",
    [
        ("tf_efficientnet_lite0", "timm"),
        ("tv:mobilenet_v2", "torchvision"),
        ("tv:resnet18", "torchvision"),
        ("timm:mobilenetv3_small_100", "timm"),
    ],
)
def test_head_surgery_is_generic(name, library):
    src = resolve_backbone(name)
    assert src.library == library
    built = build_classifier(src, HeadSpec(7, (32, 16), 0.1), pretrained=False)
    model = built.model.eval()
    out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 7)
    linears = [m for m in model.head if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [32, 16, 7]
    # The old 1000-class output layer is gone from the backbone.
    assert not any(
        isinstance(m, torch.nn.Linear) and m.out_features == 1000 for m in model.backbone.modules()
    )


def test_freeze_keeps_bn_in_eval_and_unfreezes_top_blocks():
    built = build_classifier(
        resolve_backbone("tf_efficientnet_lite0"), HeadSpec(3), pretrained=False
    )
    model = built.model
    model.freeze_backbone(0)
    model.train()
    assert model.backbone_frozen
    bns = [m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)
    assert all(p.requires_grad for p in model.head.parameters())
    model.freeze_backbone(2)
    model.train()
    units = backbone_units(model.backbone)
    top = [p for m in units[-2] + units[-1] for p in m.parameters()]
    rest = [p for u in units[:-2] for m in u for p in m.parameters()]
    assert all(p.requires_grad for p in top) and not any(p.requires_grad for p in rest)
    top_bn = [
        m for u in units[-2:] for m in u for m in m.modules() if isinstance(m, torch.nn.BatchNorm2d)
    ]
    assert top_bn and all(m.training for m in top_bn)


def test_local_checkpoint_file_by_name_and_by_arch(tmp_path):
    import torchvision

    ref = torchvision.models.mobilenet_v2(num_classes=1000)
    path = tmp_path / "mobilenet_v2-b0353104.pth"
    torch.save(ref.state_dict(), path)
    src = resolve_backbone(str(path))
    assert (src.library, src.arch, src.weights) == ("torchvision", "mobilenet_v2", "file")
    model, _ = create_backbone(src)
    for (k, a), b in zip(ref.state_dict().items(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    other = tmp_path / "weights.pth"
    torch.save(ref.state_dict(), other)
    with pytest.raises(FtedgeError, match="ARCH@PATH"):
        resolve_backbone(str(other))
    assert resolve_backbone(f"tv:mobilenet_v2@{other}").arch == "mobilenet_v2"


@pytest.mark.parametrize(
    "name, message",
    [
        ("no_such_net_xyz", "unknown model"),
        ("timm:no_such_net_xyz", "unknown timm model"),
        ("/does/not/exist.pth", "does not exist"),
    ],
)
def test_bad_model_names(name, message):
    with pytest.raises(FtedgeError, match=message):
        resolve_backbone(name)


def test_unreadable_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "resnet18-deadbeef.pth"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(FtedgeError, match="unreadable checkpoint"):
        create_backbone(resolve_backbone(str(bad)))


@pytest.mark.parametrize(
    "name",
    ["tf_efficientnet_lite0", "tv:mobilenet_v2", "tv:resnet18", "timm:mobilenetv3_small_100"],
)
def test_batchnorm_folding_for_cached_features_is_exact_and_complete(name):
    from ftedge.training.features import FrozenExtractor, fold_frozen_batchnorm

    model = build_classifier(resolve_backbone(name), HeadSpec(3), pretrained=False).model
    torch.manual_seed(0)
    for m in model.modules():  # non-trivial statistics, so a wrong fold would show
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
    model.freeze_backbone(0)
    model.eval()
    x = torch.randn(4, 3, 64, 64)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.backbone.modules())
    with torch.inference_mode():
        ref = model.backbone(x)
        fast, n = fold_frozen_batchnorm(model.backbone, x)
        assert n == n_bn > 0
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
        torch.testing.assert_close(fast(x), ref, rtol=1e-4, atol=1e-4)
        ex = FrozenExtractor(model.backbone)
        torch.testing.assert_close(ex(x), ref)  # first call: the reference itself
        torch.testing.assert_close(ex(x), ref, rtol=1e-4, atol=1e-4)
        assert ex.folded == n_bn
    # The original backbone is untouched.
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.backbone.modules()) == n_bn


# -- pretrained weights load by name, checked -------------------------------------------------
def _lite0_file_state() -> dict[str, torch.Tensor]:
    import importlib

    from ftedge.models.registry import OFFLINE_WEIGHTS, read_state_dict

    module, cls = OFFLINE_WEIGHTS["tf_efficientnet_lite0"]
    return read_state_dict(getattr(importlib.import_module(module), cls).get_model_file_path())


def test_offline_weights_load_by_name_into_every_slot():
    state = _lite0_file_state()
    model, _ = create_backbone(resolve_backbone("tf_efficientnet_lite0"))
    own = model.state_dict()
    assert torch.equal(own["blocks.3.0.conv_pw.weight"], state["_blocks.5._expand_conv.weight"])
    assert torch.equal(own["blocks.0.0.conv_pw.weight"], state["_blocks.0._project_conv.weight"])
    assert torch.equal(own["bn2.running_var"], state["_bn1.running_var"])
    assert torch.equal(own["classifier.weight"], state["_fc.weight"])


def test_weights_file_with_a_renamed_tensor_is_refused_naming_the_key(tmp_path):
    state = _lite0_file_state()
    renamed = {
        (k + "s" if k == "_blocks.3._project_conv.weight" else k): v for k, v in state.items()
    }
    path = tmp_path / "weights.pth"
    torch.save(renamed, path)
    with pytest.raises(
        FtedgeError, match=r"weights\.pth: unexpected key _blocks\.3\._project_conv\.weights$"
    ):
        create_backbone(resolve_backbone(f"tf_efficientnet_lite0@{path}"))


def test_weights_file_with_two_same_shape_tensors_swapped_in_name_loads_them_by_name(tmp_path):
    """The file's order is unchanged, only the two names are exchanged: loading by position
    would put each tensor back where it came from; loading by name puts it where it is named."""
    a, b = "_blocks.9._project_conv.weight", "_blocks.10._project_conv.weight"
    state = _lite0_file_state()
    assert state[a].shape == state[b].shape and not torch.equal(state[a], state[b])
    swapped = {{a: b, b: a}.get(k, k): v for k, v in state.items()}
    path = tmp_path / "weights.pth"
    torch.save(swapped, path)
    model, _ = create_backbone(resolve_backbone(f"tf_efficientnet_lite0@{path}"))
    own = model.state_dict()
    assert torch.equal(own["blocks.4.1.conv_pwl.weight"], swapped[a])  # file's _blocks.9
    assert torch.equal(own["blocks.4.2.conv_pwl.weight"], swapped[b])  # file's _blocks.10


def test_torchvision_state_dict_loads_strictly_by_name(tmp_path):
    import torchvision

    ref = torchvision.models.mobilenet_v2(num_classes=1000).state_dict()
    path = tmp_path / "weights.pth"
    wrong_shape = ref | {"classifier.1.weight": torch.zeros(10, 1280)}
    torch.save(wrong_shape, path)
    with pytest.raises(
        FtedgeError,
        match=r"weights\.pth: classifier\.1\.weight has shape \(10, 1280\) "
        r"but the model expects \(1000, 1280\)$",
    ):
        create_backbone(resolve_backbone(f"tv:mobilenet_v2@{path}"))
    torch.save({k: v for k, v in ref.items() if k != "features.0.0.weight"}, path)
    with pytest.raises(FtedgeError, match=r"weights\.pth: missing key features\.0\.0\.weight$"):
        create_backbone(resolve_backbone(f"tv:mobilenet_v2@{path}"))
    torch.save(ref | {"extra.weight": torch.zeros(1)}, path)
    with pytest.raises(FtedgeError, match=r"weights\.pth: unexpected key extra\.weight$"):
        create_backbone(resolve_backbone(f"tv:mobilenet_v2@{path}"))
