"""torchvision transforms built from a PreprocessSpec (training side).

The evaluation transform is the reference that ``ftedge.runtime.preprocess`` reproduces in
numpy + Pillow (tests/test_preprocess.py compares them on real images).
"""

from __future__ import annotations

from typing import Any

from ftedge.runtime.preprocess import PreprocessSpec


def _interp(spec: PreprocessSpec) -> Any:
    from torchvision.transforms import InterpolationMode

    return InterpolationMode(spec.interpolation)


def eval_transform(spec: PreprocessSpec) -> Any:
    """Resize shorter side to floor(size/crop_pct), centre crop, to tensor, normalise."""
    from torchvision import transforms as T

    return T.Compose(
        [
            T.Lambda(lambda im: im.convert("RGB")),  # grayscale/RGBA/palette -> 3 channels
            T.Resize(spec.resize_size, interpolation=_interp(spec)),
            T.CenterCrop((spec.height, spec.width)),
            T.ToTensor(),
            T.Normalize(spec.mean, spec.std),
        ]
    )


def train_transform(
    spec: PreprocessSpec, *, hflip: bool, crop_scale: float, color_jitter: float
) -> Any:
    """Random resized crop (+ flip, + colour jitter) then the same normalisation as eval."""
    from torchvision import transforms as T

    steps: list[Any] = [
        T.Lambda(lambda im: im.convert("RGB")),
        T.RandomResizedCrop(
            (spec.height, spec.width), scale=(crop_scale, 1.0), interpolation=_interp(spec)
        ),
    ]
    if hflip:
        steps.append(T.RandomHorizontalFlip())
    if color_jitter > 0:
        steps.append(T.ColorJitter(color_jitter, color_jitter, color_jitter))
    steps += [T.ToTensor(), T.Normalize(spec.mean, spec.std)]
    return T.Compose(steps)
