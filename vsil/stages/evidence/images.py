"""Loading images safely: local files under an image root, bytes, or PIL images.

Refused with a reason (the row becomes ``status: "error"``): URLs, paths that escape the root
(``../``, absolute paths outside it, symlinks pointing out of it), missing files, non-images,
truncated or corrupt files, and images above ``max_pixels`` (a decompression-bomb guard, checked
from the header before any pixel is decoded). CMYK, palette, 16-bit and alpha images become RGB
(alpha over white); animated images give their first frame.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_PIXELS = 64_000_000
DEFAULT_MAX_BYTES = 256 * 1024 * 1024  # an image file above this size is refused before it is read


class ImageError(ValueError):
    """An image that cannot be used; the message is the row's error reason."""


@dataclass
class LoadedImage:
    image: Any  # PIL.Image.Image, RGB
    sha256: str  # of the encoded bytes (or of the pixels for in-memory PIL images)
    origin: str


def _within(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root


def resolve_path(ref: str, image_root: str | None) -> str:
    """The real path of ``ref`` under ``image_root`` (default: the working directory), or ImageError."""
    if "\x00" in ref:
        raise ImageError(f"invalid image path: {ref[:80]!r} contains a NUL byte")
    if any("\ud800" <= ch <= "\udfff" for ch in ref):
        raise ImageError(f"invalid image path: {ref[:80]!r} is not valid Unicode")
    if "://" in ref or ref.startswith("data:"):
        raise ImageError(f"image is a URL (only local files are read): {ref[:80]!r}")
    root = os.path.realpath(image_root or os.getcwd())
    joined = os.path.normpath(os.path.join(root, ref))
    if not _within(joined, root):
        raise ImageError(f"image outside the image root: {ref!r} is not under {root}")
    real = os.path.realpath(joined)
    if not _within(real, root):
        raise ImageError(f"image outside the image root: {ref!r} resolves (through a symlink) outside {root}")
    if not os.path.exists(real):
        raise ImageError(f"image file not found: {ref}")
    if not os.path.isfile(real):
        raise ImageError(f"image path is not a file: {ref}")
    return real


def _decode(data: bytes, origin: str, max_pixels: int) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            w, h = im.size
            if w * h > max_pixels:
                raise ImageError(
                    f"image too large: {origin} is {w}x{h} pixels, above the limit of {max_pixels} "
                    "(decompression-bomb guard)"
                )
            if getattr(im, "is_animated", False):
                im.seek(0)
            im.load()
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"not an image file: {origin}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"image refused by the decompression-bomb guard: {origin}: {e}") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"corrupt or truncated image: {origin}: {e}") from None
    return to_rgb(im)


def to_rgb(im: Any) -> Any:
    """RGB copy of any PIL image: alpha over white, palette/CMYK/16-bit/greyscale converted."""
    from PIL import Image

    if im.mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
    if im.mode in ("RGBA", "LA", "PA"):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        im = im.point(lambda v: v / 256).convert("L")
    return im.convert("RGB") if im.mode != "RGB" else im


@dataclass
class ImageSource:
    """An image read but not decoded yet: its bytes (or an in-memory PIL image) and its hash, so a
    cache lookup needs no decoding."""

    sha256: str
    origin: str
    data: bytes | None = None
    pil: Any = None

    def decode(self, max_pixels: int = DEFAULT_MAX_PIXELS) -> Any:
        """The RGB PIL image (raises ImageError)."""
        if self.pil is not None:
            return self.pil
        assert self.data is not None
        return _decode(self.data, self.origin, max_pixels)


def read_image(
    ref: Any, image_root: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = DEFAULT_MAX_BYTES
) -> ImageSource:
    """Read one image reference (see ``load_image``) and hash it without decoding the pixels
    (in-memory PIL images are converted, since their pixels are their content). A file above
    ``max_bytes`` is refused before it is read."""
    if isinstance(ref, dict):
        if ref.get("bytes"):
            ref = ref["bytes"]
        elif ref.get("path"):
            ref = ref["path"]
        else:
            raise ImageError("image column holds neither bytes nor a path")
    if isinstance(ref, (bytes, bytearray, memoryview)):
        data = bytes(ref)
        if not data:
            raise ImageError("image bytes are empty")
        if len(data) > max_bytes:
            raise ImageError(f"image too large: {len(data):,} bytes, above the limit of {max_bytes:,}")
        return ImageSource(hashlib.sha256(data).hexdigest(), "(bytes)", data=data)
    if isinstance(ref, (str, os.PathLike)):
        s = os.fspath(ref)
        if not s.strip():
            raise ImageError("image path is empty")
        path = resolve_path(s, image_root)
        try:
            size = os.path.getsize(path)
            if size > max_bytes:
                raise ImageError(f"image too large: {s} is {size:,} bytes, above the limit of {max_bytes:,}")
            with open(path, "rb") as f:
                data = f.read(max_bytes + 1)
        except OSError as e:
            raise ImageError(f"cannot read image: {s}: {e.strerror}") from None
        return ImageSource(hashlib.sha256(data).hexdigest(), s, data=data)
    if hasattr(ref, "mode") and hasattr(ref, "size") and hasattr(ref, "tobytes"):
        w, h = ref.size
        if w * h > max_pixels:
            raise ImageError(f"image too large: {w}x{h} pixels, above the limit of {max_pixels}")
        if getattr(ref, "is_animated", False):
            ref.seek(0)
        rgb = to_rgb(ref)
        digest = hashlib.sha256(f"{rgb.size}".encode() + rgb.tobytes()).hexdigest()
        return ImageSource(digest, "PIL image", pil=rgb)
    raise ImageError(f"unsupported image value: type {type(ref).__name__}")


def load_image(ref: Any, image_root: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Load one image reference: a path string (under ``image_root``), bytes, a dict with ``bytes``
    or ``path`` (Hugging Face / Parquet image columns), or a PIL image."""
    src = read_image(ref, image_root, max_pixels)
    return LoadedImage(src.decode(max_pixels), src.sha256, src.origin)
