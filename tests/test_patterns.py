"""Class-coded corner patterns: where the pixels land, what they encode, and parameter checks."""
from __future__ import annotations

import math

import pytest
import torch

# the module, not its names: ``patterns.test_views`` would otherwise be collected as a test
from erosion_utils import patterns
from erosion_utils.patterns import CORNERS, KINDS, PatternSpec, make_codes, patched_mask, stamp
from erosion_utils.validation import ParameterError

IMAGE = 32


def expected_region(corner: str, region: int) -> tuple[slice, slice]:
    """Rows and columns a ``region``-pixel pattern covers, written out independently of the package."""
    far = slice(IMAGE - region, IMAGE)
    near = slice(0, region)
    return {"top_left": (near, near), "top_right": (near, far),
            "bottom_left": (far, near), "bottom_right": (far, far)}[corner]


def random_images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, IMAGE, IMAGE), generator=torch.Generator().manual_seed(seed),
                         dtype=torch.uint8)


@pytest.mark.parametrize("corner", CORNERS)
@pytest.mark.parametrize("kind", KINDS)
def test_stamp_writes_exactly_the_code_into_the_corner(kind, corner):
    num_classes, size = 10, 3
    spec = PatternSpec(kind=kind, size=size, corner=corner, seed=5)
    codes = make_codes(spec, num_classes)
    region = size * math.ceil(math.sqrt(num_classes)) if kind == "position" else size
    assert codes.codes.shape == (num_classes, 3, region, region)
    assert codes.masks.shape == (num_classes, 1, region, region)

    images = random_images(2 * num_classes)
    labels = torch.arange(2 * num_classes) % num_classes
    out = stamp(images, labels, codes)

    rows, cols = expected_region(corner, region)
    expected = images.clone()
    for i, c in enumerate(labels.tolist()):
        if kind == "colour":
            colour = torch.tensor(patterns._TAB10[c], dtype=torch.uint8)
            expected[i, :, rows, cols] = colour[:, None, None]
        elif kind == "noise":
            expected[i, :, rows, cols] = codes.codes[c]
        else:  # a white size x size mark in cell (c // g, c % g) of the g x g grid
            g = math.ceil(math.sqrt(num_classes))
            r, q = divmod(c, g)
            block = expected[i, :, rows, cols]
            block[:, r * size:(r + 1) * size, q * size:(q + 1) * size] = 255
            expected[i, :, rows, cols] = block
    assert torch.equal(out, expected)
    assert torch.equal(images, random_images(2 * num_classes)), "stamp must not modify its input"


@pytest.mark.parametrize("kind", KINDS)
def test_stamp_only_touches_images_selected_by_where(kind):
    codes = make_codes(PatternSpec(kind=kind, size=2, corner="bottom_right"), 10)
    images = random_images(8)
    labels = torch.arange(8)
    where = torch.tensor([True, False, True, False, False, False, False, True])
    out = stamp(images, labels, codes, where)
    assert torch.equal(out[~where], images[~where])
    assert torch.equal(out[where], stamp(images[where], labels[where], codes))
    assert torch.equal(stamp(images, labels, codes, torch.zeros(8, dtype=torch.bool)), images)


def test_colour_and_noise_codes_are_distinct_per_class_and_deterministic():
    colour = make_codes(PatternSpec("colour", 4), 10)
    assert (colour.codes == colour.codes[:, :, :1, :1]).all(), "a colour code is one colour"
    assert len({tuple(c[:, 0, 0].tolist()) for c in colour.codes}) == 10
    noise = make_codes(PatternSpec("noise", 4, seed=1), 10)
    assert len({c.flatten().tolist().__repr__() for c in noise.codes}) == 10
    assert torch.equal(noise.codes, make_codes(PatternSpec("noise", 4, seed=1), 10).codes)
    assert not torch.equal(noise.codes, make_codes(PatternSpec("noise", 4, seed=2), 10).codes)


@pytest.mark.parametrize("num_classes, size", [(10, 4), (10, 1), (100, 3), (100, 1)])
@pytest.mark.parametrize("corner", CORNERS)
def test_position_mark_cell_encodes_the_class(num_classes, size, corner):
    g = math.ceil(math.sqrt(num_classes))
    codes = make_codes(PatternSpec("position", size, corner), num_classes)
    region = g * size
    black = torch.zeros(num_classes, 3, IMAGE, IMAGE, dtype=torch.uint8)
    labels = torch.arange(num_classes)
    out = stamp(black, labels, codes)
    rows, cols = expected_region(corner, region)
    outside = out.clone()
    outside[:, :, rows, cols] = 0
    assert not outside.any(), "nothing outside the pattern region changes"
    for c in range(num_classes):
        block = out[c, 0, rows, cols]
        # one white size x size mark, in grid cell (c // g, c % g)
        assert int((block == 255).sum()) == size * size
        cells = block.reshape(g, size, g, size).amax(dim=(1, 3))  # (g, g): which cell holds the mark
        assert torch.nonzero(cells).tolist() == [list(divmod(c, g))]


def test_mismatched_view_shows_another_class_code():
    num_classes = 10
    codes = make_codes(PatternSpec("noise", 4, "top_right", seed=3), num_classes)
    x = random_images(200)
    y = torch.arange(200) % num_classes
    views = patterns.test_views(x, y, codes, num_classes, seed=11)
    assert set(views) == {"clean", "matched", "mismatched"}
    assert torch.equal(views["clean"][0], x) and torch.equal(views["clean"][1], y)
    assert torch.equal(views["matched"][1], y)
    other = views["mismatched"][1]
    assert (other != y).all()
    assert set(other.tolist()) == set(range(num_classes))
    rows, cols = expected_region("top_right", 4)
    assert torch.equal(views["matched"][0][:, :, rows, cols], codes.codes[y])
    assert torch.equal(views["mismatched"][0][:, :, rows, cols], codes.codes[other])
    # everything else is the clean image
    for name in ("matched", "mismatched"):
        img = views[name][0].clone()
        img[:, :, rows, cols] = x[:, :, rows, cols]
        assert torch.equal(img, x)


def test_mismatched_labels_uniform_over_other_classes_and_deterministic():
    y = torch.zeros(9000, dtype=torch.long)
    other = patterns.mismatched_labels(y, 10, seed=0)
    counts = torch.bincount(other, minlength=10)
    assert counts[0] == 0
    assert (counts[1:] > 800).all() and (counts[1:] < 1200).all()  # expected 1000 each
    assert torch.equal(other, patterns.mismatched_labels(y, 10, seed=0))
    assert not torch.equal(other, patterns.mismatched_labels(y, 10, seed=1))


@pytest.mark.parametrize("n, fraction", [(100, 1.0), (100, 0.1), (1000, 0.333), (7, 0.5), (5, 0.5), (10, 0.05),
                                         (50000, 0.01)])
def test_patched_mask_count_is_round_fraction_times_n(n, fraction):
    mask = patched_mask(n, fraction, seed=0)
    assert mask.dtype == torch.bool and mask.shape == (n,)
    assert int(mask.sum()) == round(fraction * n)
    assert torch.equal(mask, patched_mask(n, fraction, seed=0))


def test_patched_mask_depends_on_seed():
    assert not torch.equal(patched_mask(1000, 0.5, seed=0), patched_mask(1000, 0.5, seed=1))


@pytest.mark.parametrize("spec, num_classes, match", [
    (PatternSpec(kind="stripes"), 10, r"pattern='stripes' is not allowed; choose one of \['colour', 'position', 'noise'\]"),
    (PatternSpec(corner="middle"), 10, r"corner='middle' is not allowed; choose one of \['top_left', 'top_right', "
                                       r"'bottom_left', 'bottom_right'\]"),
    (PatternSpec(size=33), 10, r"pattern_size=33 is out of range; allowed in \[1, 32\]"),
    (PatternSpec(size=0), 10, r"pattern_size=0 is out of range; allowed in \[1, 32\]"),
    (PatternSpec(size=2.5), 10, r"pattern_size=2.5 must be an integer in \[1, 32\]"),
    (PatternSpec(kind="position", size=9), 10, r"pattern_size=9 .*36 pixels.*allowed pattern_size: 1\.\.8"),
    (PatternSpec(kind="position", size=4), 100, r"pattern_size=4 .*100 classes.*allowed pattern_size: 1\.\.3"),
    (PatternSpec(fraction=0), 10, r"fraction=0 is out of range; allowed in \(0, 1\]"),
    (PatternSpec(fraction=1.5), 10, r"fraction=1.5 is out of range; allowed in \(0, 1\]"),
])
def test_bad_pattern_parameters_are_named_with_allowed_values(spec, num_classes, match):
    with pytest.raises(ParameterError, match=match):
        spec.validate(IMAGE, num_classes)
    with pytest.raises(ParameterError, match=match):
        make_codes(spec, num_classes)


def test_largest_allowed_position_pattern_for_100_classes_fits():
    assert patterns.max_size("position", IMAGE, 100) == 3
    codes = make_codes(PatternSpec("position", 3, "bottom_right"), 100)
    assert codes.codes.shape[-1] == 30


@pytest.mark.parametrize("fraction", [0, 1.5, -0.1])
def test_patched_mask_rejects_bad_fraction(fraction):
    with pytest.raises(ParameterError, match=r"fraction=.* is out of range; allowed in \(0, 1\]"):
        patched_mask(10, fraction, seed=0)
