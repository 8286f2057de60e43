"""Class-coded patterns stamped into a corner of uint8 images (N, C, H, W).

Every pattern is a square region of side ``region`` in one corner, a per-class code (C, region, region) and a
per-class mask saying which pixels of the region the code overwrites:
- ``colour``: a k x k patch of one class-specific colour;
- ``position``: a k x k white mark whose cell in a g x g grid (g = ceil(sqrt(classes))) encodes the class;
- ``noise``: a fixed random k x k uint8 code per class.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .validation import ParameterError, check_choice, check_number

KINDS = ("colour", "position", "noise")
CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")
# matplotlib's tab10, as uint8 RGB: ten colours a reader can tell apart
_TAB10 = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
          (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


@dataclass(frozen=True)
class PatternSpec:
    kind: str = "colour"
    size: int = 4
    corner: str = "top_left"
    fraction: float = 1.0
    seed: int = 0

    def region(self, num_classes: int) -> int:
        if self.kind == "position":
            return self.size * math.ceil(math.sqrt(num_classes))
        return self.size

    def validate(self, image_size: int = 32, num_classes: int = 10) -> "PatternSpec":
        check_choice("pattern", self.kind, KINDS)
        check_choice("corner", self.corner, CORNERS)
        check_number("pattern_size", self.size, low=1, high=image_size, integer=True)
        check_number("fraction", self.fraction, low=0, high=1, low_inclusive=False)
        if self.region(num_classes) > image_size:
            raise ParameterError(
                f"pattern_size={self.size} makes a {self.kind} pattern of {self.region(num_classes)} pixels for "
                f"{num_classes} classes, larger than the {image_size}-pixel image; allowed pattern_size: 1.."
                f"{max_size(self.kind, image_size, num_classes)}")
        return self


def max_size(kind: str, image_size: int, num_classes: int) -> int:
    return image_size // math.ceil(math.sqrt(num_classes)) if kind == "position" else image_size


@dataclass
class PatternCodes:
    """Per-class codes (K, C, R, R) uint8 and masks (K, 1, R, R) bool for one ``PatternSpec``."""

    spec: PatternSpec
    codes: torch.Tensor
    masks: torch.Tensor

    def to(self, device) -> "PatternCodes":
        return PatternCodes(self.spec, self.codes.to(device), self.masks.to(device))


def make_codes(spec: PatternSpec, num_classes: int, channels: int = 3, image_size: int = 32) -> PatternCodes:
    """Build the class codes of ``spec``; deterministic in ``spec.seed``."""
    spec.validate(image_size, num_classes)
    k, r = spec.size, spec.region(num_classes)
    gen = torch.Generator().manual_seed(spec.seed)
    if spec.kind == "colour":
        if num_classes <= len(_TAB10):
            colours = torch.tensor(_TAB10[:num_classes], dtype=torch.uint8)
        else:
            colours = torch.randint(0, 256, (num_classes, 3), generator=gen, dtype=torch.uint8)
        colours = colours[:, :channels] if channels <= 3 else colours.repeat(1, math.ceil(channels / 3))[:, :channels]
        codes = colours[:, :, None, None].expand(num_classes, channels, k, k).clone()
        masks = torch.ones(num_classes, 1, k, k, dtype=torch.bool)
    elif spec.kind == "noise":
        codes = torch.randint(0, 256, (num_classes, channels, k, k), generator=gen, dtype=torch.uint8)
        masks = torch.ones(num_classes, 1, k, k, dtype=torch.bool)
    else:
        g = math.ceil(math.sqrt(num_classes))
        codes = torch.full((num_classes, channels, r, r), 255, dtype=torch.uint8)
        masks = torch.zeros(num_classes, 1, r, r, dtype=torch.bool)
        for c in range(num_classes):
            row, col = divmod(c, g)
            masks[c, :, row * k:(row + 1) * k, col * k:(col + 1) * k] = True
    return PatternCodes(spec, codes, masks)


def region_slices(corner: str, region: int, image_size: int) -> tuple[slice, slice]:
    top = corner.startswith("top")
    left = corner.endswith("left")
    rows = slice(0, region) if top else slice(image_size - region, image_size)
    cols = slice(0, region) if left else slice(image_size - region, image_size)
    return rows, cols


def stamp(images: torch.Tensor, pattern_labels: torch.Tensor, codes: PatternCodes,
          where: torch.Tensor | None = None) -> torch.Tensor:
    """Return a copy of ``images`` with the code of ``pattern_labels[i]`` stamped into image i (where ``where``)."""
    out = images.clone()
    r = codes.codes.shape[-1]
    rows, cols = region_slices(codes.spec.corner, r, images.shape[-1])
    idx = torch.arange(len(images), device=images.device) if where is None else torch.nonzero(where).flatten()
    if len(idx) == 0:
        return out
    lab = pattern_labels[idx]
    block = out[idx, :, rows, cols]
    out[idx, :, rows, cols] = torch.where(codes.masks[lab], codes.codes[lab], block)
    return out


def patched_mask(n: int, fraction: float, seed: int) -> torch.Tensor:
    """Which of ``n`` training images carry the pattern: exactly round(fraction * n) of them, chosen by ``seed``."""
    check_number("fraction", fraction, low=0, high=1, low_inclusive=False)
    count = round(fraction * n)
    mask = torch.zeros(n, dtype=torch.bool)
    mask[torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:count]] = True
    return mask


def mismatched_labels(labels: torch.Tensor, num_classes: int, seed: int) -> torch.Tensor:
    """For each label a different class, drawn uniformly from the other ``num_classes - 1``."""
    gen = torch.Generator().manual_seed(seed)
    shift = torch.randint(1, num_classes, labels.shape, generator=gen).to(labels.device)
    return (labels + shift) % num_classes


def test_views(x: torch.Tensor, y: torch.Tensor, codes: PatternCodes, num_classes: int,
               seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The three evaluation views: (images, pattern class shown) for clean, matched and mismatched."""
    other = mismatched_labels(y, num_classes, seed)
    return {
        "clean": (x, y),
        "matched": (stamp(x, y, codes), y),
        "mismatched": (stamp(x, other, codes), other),
    }
