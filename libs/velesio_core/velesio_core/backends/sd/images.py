"""Images in and out of AUTOMATIC1111's API: base64 in every form A1111 takes, PNG with the
``parameters`` text chunk out.

Input images are decoded and checked where the request arrives, so that a bad one is a 400 before
anything is queued: raw base64 or a ``data:image/...;base64,`` URL (the Unity client sends raw
base64 of a PNG), of a format Pillow reads, within the size limit. Decompression bombs are caught
by the pixel limit before the pixels are decoded.
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import TYPE_CHECKING

from ...errors import ErrorKind, GatewayError, invalid_request

if TYPE_CHECKING:
    from PIL import Image


def decode_image(value: str, *, field: str, max_side: int) -> Image.Image:
    """A request's base64 image as a Pillow image (RGB or L kept as they are), or a 400/413."""
    from PIL import Image, UnidentifiedImageError

    data = _base64_bytes(value, field)
    try:
        image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width > max_side or height > max_side:
            raise GatewayError(
                ErrorKind.PAYLOAD_TOO_LARGE,
                f"{field}: the image is {width}x{height}; the largest side allowed is {max_side}",
            )
        image.load()
    except GatewayError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise invalid_request(f"{field}: not an image Pillow can read ({error.__class__.__name__})") from None
    return image


def _base64_bytes(value: str, field: str) -> bytes:
    text = value.strip()
    if text.startswith("data:"):
        header, _, text = text.partition(",")
        if ";base64" not in header:
            raise invalid_request(f"{field}: a data URL must be base64 encoded")
    if text.startswith(("http://", "https://")):
        raise invalid_request(f"{field}: image URLs are not fetched; send the image as base64")
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise invalid_request(f"{field}: not valid base64") from None
    if not data:
        raise invalid_request(f"{field}: the image is empty")
    return data


def encode_png(image: Image.Image, parameters: str | None) -> str:
    """Raw base64 (no ``data:`` prefix, as A1111 answers) of a PNG carrying A1111's ``parameters`` chunk."""
    from PIL.PngImagePlugin import PngInfo

    info = None
    if parameters is not None:
        info = PngInfo()
        info.add_text("parameters", parameters)
    buffer = io.BytesIO()
    # Level 1: a texture's PNG is a few percent larger and several times faster to write.
    image.save(buffer, format="PNG", pnginfo=info, compress_level=1)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
