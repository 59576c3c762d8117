"""Image decoding (pycmlt.data.images, image_modes): transparency, bit depths, EXIF orientation,
decompression bombs, early reduction of large images, argument errors; and a property test of
every common mode against a reference decode written here with numpy from the pixels we saved."""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import pycmlt.data.images as images_module
from pycmlt.data import ImageLoadError, build_dataset, collate, load_image
from pycmlt.data.image_modes import parse_background


def _drawing(h=24, w=32):
    """A black disc on a transparent background: alpha 255 inside, 0 outside."""
    yy, xx = np.mgrid[:h, :w]
    return (((yy - h / 2) ** 2 + (xx - w / 2) ** 2) < (min(h, w) / 3) ** 2).astype(np.uint8) * 255


def _transparent_files(tmp_path):
    alpha = _drawing()
    black = np.zeros_like(alpha)
    rgba = Image.fromarray(np.dstack([black, black, black, alpha]), "RGBA")
    rgba.save(tmp_path / "rgba.png")
    Image.fromarray(np.dstack([black, alpha]), "LA").save(tmp_path / "la.png")
    pal = Image.fromarray((alpha > 0).astype(np.uint8), "P")   # index 1 = the drawing, 0 = transparent
    pal.putpalette([0, 0, 0, 0, 0, 0])
    pal.save(tmp_path / "p.png", transparency=0)
    pal.save(tmp_path / "p.gif", transparency=0)
    return ["rgba.png", "la.png", "p.png", "p.gif"]


def test_transparent_images_keep_their_drawing(tmp_path):
    inside = torch.from_numpy(_drawing()[:, 4:28] > 0)  # the centre 24x24 crop of the 24x32 image
    for name in _transparent_files(tmp_path):
        img = load_image(tmp_path / name, 24)
        assert img.float().std() > 50, name                    # convert("RGB") made these solid black
        assert (img[:, ~inside] == 255).all(), name    # white background by default
        assert (img[:, inside] == 0).all(), name
        red = load_image(tmp_path / name, 24, background="#ff0000")
        assert red[:, 0, 0].tolist() == [255, 0, 0] and red[:, 12, 12].tolist() == [0, 0, 0]
        assert torch.equal(load_image(tmp_path / name, 24, background=(255, 0, 0)), red)


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 64).round().astype(np.uint16).reshape(64, 64)
    Image.fromarray(ramp).save(tmp_path / "ramp16.png")
    assert Image.open(tmp_path / "ramp16.png").mode == "I;16"
    img = load_image(tmp_path / "ramp16.png", 64)
    assert abs(img.float().mean().item() - 127.5) < 0.5   # was 251.6 (clipped at 255)
    assert img.min() == 0 and img.max() == 255
    Image.fromarray(ramp.astype(np.int32)).save(tmp_path / "ramp32.tif")
    assert torch.equal(load_image(tmp_path / "ramp32.tif", 64), img)
    Image.fromarray((ramp / 65535.0).astype(np.float32)).save(tmp_path / "rampf.tif")
    assert (load_image(tmp_path / "rampf.tif", 64).int() - img.int()).abs().max() <= 1


def test_decompression_bomb_is_a_bad_image_by_path(tmp_path, monkeypatch, isolated_cache):
    from data_fixtures import manifest_rows, write_csv
    rows = manifest_rows(tmp_path)
    write_csv(tmp_path / "m.csv", rows)
    bomb = tmp_path / rows[0]["image"]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)   # the 24x18 test images (432 px) exceed 2 x 100
    with pytest.raises(ImageLoadError, match=f"{bomb.name}: decompression bomb"):
        load_image(bomb, 8)
    ds = build_dataset("manifest", "train", path=tmp_path / "m.csv", image_size=8, skip_bad=True)
    batch = collate([ds[i] for i in range(len(ds))])
    assert len(batch) == 0 and str(bomb) in batch.bad_paths and "decompression bomb" in ds.bad_images.to_dict()[
        "reasons"][str(bomb)]
    with pytest.raises(ImageLoadError, match="decompression bomb"):
        build_dataset("manifest", "train", path=tmp_path / "m.csv", image_size=8).verify_images()
    skipping = build_dataset("manifest", "train", path=tmp_path / "m.csv", image_size=8, skip_bad=True)
    bad = skipping.verify_images()
    assert len(skipping) == 0 and str(bomb) in bad


def test_large_images_are_reduced_before_conversion(tmp_path, monkeypatch):
    seen = []
    real = images_module.to_rgb
    monkeypatch.setattr(images_module, "to_rgb", lambda im, bg: seen.append(im.size) or real(im, bg))
    alpha = _drawing(800, 1000)
    Image.fromarray(np.dstack([alpha // 2, alpha, alpha, alpha]), "RGBA").save(tmp_path / "big.png")
    Image.fromarray(np.dstack([alpha, alpha // 3, alpha])[..., :3]).save(tmp_path / "big.jpg", quality=90)
    for name in ("big.png", "big.jpg"):
        seen.clear()
        img = load_image(tmp_path / name, 16)
        assert img.shape == (3, 16, 16)
        assert seen[0][0] * seen[0][1] <= 1000 * 800 // 400, (name, seen)   # not converted at full size
    # the reduced decode matches a full-size composite resized the same way
    full = Image.open(tmp_path / "big.png").convert("RGBA")
    white = Image.alpha_composite(Image.new("RGBA", full.size, (255, 255, 255, 255)), full).convert("RGB")
    ref = np.asarray(white.resize((20, 16), Image.Resampling.BILINEAR, reducing_gap=2.0).crop((2, 0, 18, 16)))
    assert np.abs(img_hwc(load_image(tmp_path / "big.png", 16)) - ref.astype(int)).max() <= 2


def img_hwc(img: torch.Tensor) -> np.ndarray:
    return img.permute(1, 2, 0).numpy().astype(int)


@pytest.mark.parametrize("size", [0, -5, 2.5, True, "8", None])
def test_load_image_rejects_bad_sizes_by_name(tmp_path, size):
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    with pytest.raises(ValueError, match=r"^size must be a positive int \(pixels\), got"):
        load_image(tmp_path / "a.png", size)
    with pytest.raises(ValueError, match=r"^size must be a positive int"):   # before looking at the file
        load_image(tmp_path / "missing.png", size)


@pytest.mark.parametrize("background", ["no-such-colour", (1, 2), (0, 0, 256), (0, 0, 1.5), "#ff000080", None])
def test_bad_background_is_named(tmp_path, background):
    with pytest.raises(ValueError, match="background must be"):
        parse_background(background)
    with pytest.raises(ValueError, match="background must be"):
        load_image(tmp_path / "a.png", 8, background=background)


def test_directory_is_not_called_missing(tmp_path):
    with pytest.raises(ImageLoadError, match=r"is a directory, not an image file"):
        load_image(tmp_path, 8)


# ------------------------------------------------------------------------------- property test
MODES = ["1", "L", "LA", "P", "P+alpha", "P+key", "RGB", "RGBA", "CMYK", "I;16", "I", "F"]
ORIENT = {1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
          5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, -1), 7: lambda a: np.rot90(a, 2).transpose(1, 0, 2),
          8: lambda a: np.rot90(a, 1)}


def _saved_image(mode, w, h, seed, wide_range):
    """(Pillow image to save, save options, reference RGBA float array [h, w, 4] of what it shows)."""
    rng = np.random.default_rng(seed)
    opts = {}
    if mode == "1":
        bits = rng.random((h, w)) < 0.5
        im = Image.fromarray(bits)
        grey = bits * 255.0
        return im, opts, np.dstack([grey, grey, grey, np.full_like(grey, 255)])
    if mode in ("P", "P+alpha", "P+key"):
        idx = rng.integers(0, 16, (h, w), dtype=np.uint8)
        palette = rng.integers(0, 256, (16, 3), dtype=np.uint8)
        im = Image.fromarray(idx, "P")
        im.putpalette(palette.flatten().tolist())
        alpha_of = np.full(256, 255.0)
        if mode == "P+alpha":
            table = rng.integers(0, 256, 10, dtype=np.uint8)   # indices 10..15 stay opaque
            opts["transparency"] = table.tobytes()
            alpha_of[:10] = table
        elif mode == "P+key":
            opts["transparency"] = 3
            alpha_of[3] = 0
        rgb = palette[idx].astype(float)
        return im, opts, np.dstack([rgb, alpha_of[idx]])
    if mode in ("L", "LA", "RGB", "RGBA", "CMYK"):
        arr = rng.integers(0, 256, (h, w, len(mode)), dtype=np.uint8)
        im = Image.frombytes(mode, (w, h), arr.tobytes())
        a = arr.astype(float)
        if mode == "CMYK":
            rgb = (255 - a[..., :3]) * (255 - a[..., 3:]) / 255
            return im, opts, np.dstack([rgb, np.full((h, w), 255.0)])
        colour = np.repeat(a[..., :1], 3, axis=2) if mode in ("L", "LA") else a[..., :3]
        alpha = a[..., -1] if mode in ("LA", "RGBA") else np.full((h, w), 255.0)
        return im, opts, np.dstack([colour, alpha])
    if mode == "I;16":
        v = rng.integers(0, 65536, (h, w)).astype(np.uint16)
        im = Image.frombytes("I;16", (w, h), v.astype("<u2").tobytes())
        grey = v / 65535 * 255
    elif mode == "I":
        lo, hi = (-70000, 200000) if wide_range else (0, 65536)
        v = rng.integers(lo, hi, (h, w)).astype(np.int32)
        im = Image.fromarray(v)
        span = max(int(v.max()) - int(v.min()), 1)
        grey = (v - v.min()) / span * 255 if wide_range else v / 65535 * 255
    else:  # "F"
        v = (rng.normal(0, 50, (h, w)) if wide_range else rng.random((h, w))).astype(np.float32)
        im = Image.fromarray(v)
        span = float(v.max()) - float(v.min())
        grey = ((v - v.min()) / span if span > 0 else v * 0) * 255 if wide_range else v * 255.0
    grey = np.rint(grey)
    return im, opts, np.dstack([grey, grey, grey, np.full((h, w), 255.0)])


def _reference(rgba, background, orientation, size, resize):
    a = rgba[..., 3:] / 255
    rgb = np.rint(rgba[..., :3] * a + np.asarray(background, float) * (1 - a)).astype(np.uint8)
    rgb = np.ascontiguousarray(ORIENT[orientation](rgb))
    h, w = rgb.shape[:2]
    img = Image.fromarray(rgb)
    if resize == "squash":
        return np.asarray(img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)).astype(int)
    s = size / min(w, h)
    nw, nh = max(size, round(w * s)), max(size, round(h * s))
    out = np.asarray(img.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=2.0)).astype(int)
    top, left = (nh - size) // 2, (nw - size) // 2
    return out[top:top + size, left:left + size]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mode=st.sampled_from(MODES), w=st.integers(1, 40), h=st.integers(1, 40), size=st.integers(1, 24),
       orientation=st.integers(1, 8), resize=st.sampled_from(["crop", "squash"]), seed=st.integers(0, 2**16),
       wide_range=st.booleans(), background=st.tuples(*[st.integers(0, 255)] * 3))
def test_load_image_matches_reference_decode(tmp_path, mode, w, h, size, orientation, resize, seed, wide_range,
                                             background):
    im, opts, rgba = _saved_image(mode, w, h, seed, wide_range)
    if mode == "CMYK":  # TIFF only; Pillow 13's TIFF loader rotates oriented L/CMYK strips wrongly itself
        orientation = 1
    exif = im.getexif()
    exif[0x0112] = orientation
    path = tmp_path / ("x.tif" if mode in ("CMYK", "I", "F") else "x.png")
    im.save(path, exif=exif, **opts)
    got = img_hwc(load_image(path, size, resize, background=background))
    ref = _reference(rgba, background, orientation, size, resize)
    # Pillow composites with integer arithmetic and box-reduces RGBA premultiplied: off by at most 2
    tol = 2 if mode in ("LA", "RGBA", "P+alpha", "P+key", "CMYK") else 1 if mode in ("I;16", "I", "F") else 0
    assert got.shape == ref.shape == (size, size, 3)
    assert np.abs(got - ref).max() <= tol, (mode, np.abs(got - ref).max())


def test_word_inference_images_use_the_training_background_and_report_bombs(tmp_path, monkeypatch):
    from data_fixtures import write_transparent

    from pycmlt.training.words import images_from_files   # what `pycmlt words IMAGE...` reads images with
    write_transparent(tmp_path / "t.png")
    meta = {"size": 8, "mean": [0.0] * 3, "std": [1.0] * 3, "resize": "crop", "background": [0, 0, 0]}
    assert images_from_files([tmp_path / "t.png"], meta).abs().max() == 0
    older = {k: meta[k] for k in ("size", "mean", "std")}   # a model.pt saved before resize/background
    assert images_from_files([tmp_path / "t.png"], older).min() == 1.0
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageLoadError, match="t.png: decompression bomb"):
        images_from_files([tmp_path / "t.png"], meta)
