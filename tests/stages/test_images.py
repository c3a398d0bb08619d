"""Image loading: paths under the root, bytes, PIL images, and every bad-image case."""

from __future__ import annotations

import io
import os

import pytest

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

from vsil.stages.evidence.images import ImageError, load_image  # noqa: E402


def png_bytes(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    (r / "sub").mkdir(parents=True)
    Image.new("RGB", (20, 10), (255, 0, 0)).save(r / "sub" / "red.png")
    (tmp_path / "outside.png").write_bytes(png_bytes(Image.new("RGB", (4, 4))))
    return r


def test_path_under_root_loads_rgb_with_hash(root):
    a = load_image("sub/red.png", str(root))
    assert a.image.mode == "RGB" and a.image.size == (20, 10) and len(a.sha256) == 64
    assert load_image("sub/../sub/red.png", str(root)).sha256 == a.sha256
    assert load_image(str(root / "sub" / "red.png"), str(root)).sha256 == a.sha256  # absolute but inside


@pytest.mark.parametrize(
    "ref, reason",
    [
        ("../outside.png", "outside the image root"),
        ("sub/../../outside.png", "outside the image root"),
        ("https://x.org/a.png", "is a URL"),
        ("sub/nope.png", "not found"),
        ("sub", "not a file"),
        ("", "empty"),
    ],
)
def test_refused_paths(root, ref, reason):
    with pytest.raises(ImageError, match=reason):
        load_image(ref, str(root))


def test_absolute_path_outside_root_refused(root, tmp_path):
    with pytest.raises(ImageError, match="outside the image root"):
        load_image(str(tmp_path / "outside.png"), str(root))


def test_symlink_out_of_root_refused(root, tmp_path):
    os.symlink(tmp_path / "outside.png", root / "link.png")
    with pytest.raises(ImageError, match="symlink"):
        load_image("link.png", str(root))
    os.symlink(root / "sub" / "red.png", root / "inner.png")  # a link that stays inside is fine
    assert load_image("inner.png", str(root)).image.size == (20, 10)


def test_non_image_truncated_and_corrupt(root):
    (root / "notes.png").write_text("this is not an image")
    with pytest.raises(ImageError, match="not an image"):
        load_image("notes.png", str(root))
    data = png_bytes(Image.effect_noise((64, 64), 50).convert("RGB"))
    (root / "trunc.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="corrupt or truncated"):
        load_image("trunc.png", str(root))
    with pytest.raises(ImageError):
        load_image(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(ImageError, match="empty"):
        load_image(b"")


def test_decompression_bomb_guard_reads_only_the_header(root):
    big = png_bytes(Image.new("L", (3000, 3000)))
    with pytest.raises(ImageError, match="decompression-bomb"):
        load_image(big, max_pixels=1_000_000)
    assert load_image(big, max_pixels=10_000_000).image.size == (3000, 3000)


def test_modes_become_rgb():
    cmyk = load_image(png_bytes(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG")).image
    assert cmyk.mode == "RGB" and cmyk.getpixel((4, 4))[0] > 200
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    assert load_image(png_bytes(rgba)).image.getpixel((0, 0)) == (255, 255, 255)  # transparent over white
    pal = Image.new("P", (8, 8), 1)
    pal.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    assert load_image(png_bytes(pal)).image.getpixel((0, 0)) == (0, 0, 255)
    pal.info["transparency"] = 1
    assert load_image(png_bytes(pal, transparency=1)).image.getpixel((0, 0)) == (255, 255, 255)
    grey16 = Image.new("I;16", (8, 8), 65535)
    assert load_image(png_bytes(grey16)).image.getpixel((0, 0))[0] > 250
    la = Image.new("LA", (8, 8), (0, 255))
    assert load_image(png_bytes(la)).image.getpixel((0, 0)) == (0, 0, 0)


def test_animated_gif_gives_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    im = load_image(buf.getvalue()).image
    assert im.mode == "RGB" and im.getpixel((0, 0))[0] > 200 and im.getpixel((0, 0))[1] < 50


def test_bytes_dicts_and_pil_images(root):
    data = (root / "sub" / "red.png").read_bytes()
    assert load_image({"bytes": data, "path": None}).sha256 == load_image(data).sha256
    assert load_image({"bytes": None, "path": "sub/red.png"}, str(root)).image.size == (20, 10)
    with pytest.raises(ImageError, match="neither bytes nor a path"):
        load_image({"bytes": None, "path": None})
    a = load_image(Image.new("RGBA", (5, 5), (1, 2, 3, 255)))
    assert a.origin == "PIL image" and a.image.getpixel((0, 0)) == (1, 2, 3)
    with pytest.raises(ImageError, match="unsupported"):
        load_image(12345)
