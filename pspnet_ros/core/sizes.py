"""Sizes on the command line and in parameters: one convention, ``HEIGHTxWIDTH``."""
from __future__ import annotations

# The one pixel limit (the node's max_image_pixels, eval's --max-pixels, the Segmenter's and the
# decoders' default): 16.8 megapixels, about 250 MB per frame in flight (docs/ROS_INTERFACE.md,
# "Memory per frame"). Here, in a module that imports nothing, so --help stays light.
DEFAULT_MAX_PIXELS = 4096 * 4096


def parse_size(text: str, what: str = 'size', lo: int = 1, hi: int | None = None
               ) -> tuple[int, int]:
    """``'360x480'`` -> ``(360, 480)``: height first, as everywhere in this package (the model
    card's ``input_size``, numpy's ``shape``). Each side must be in ``[lo, hi]``.

    Raises ``ValueError`` naming ``what`` and the bad text otherwise.
    """
    try:
        h, w = (int(v) for v in str(text).strip().lower().split('x'))
    except ValueError:
        raise ValueError(f'{what} must be HEIGHTxWIDTH like 360x480, got {text!r}') from None
    for side in (h, w):
        if side < lo or (hi is not None and side > hi):
            bound = f'from {lo} to {hi}' if hi is not None else f'at least {lo}'
            raise ValueError(f'{what} {text!r}: each side must be {bound}')
    return h, w


def parse_sizes(spec: str, what: str = 'sizes', lo: int = 1, hi: int | None = None
                ) -> list[tuple[int, int]]:
    """``'425x569,489x649'`` -> ``[(425, 569), (489, 649)]`` (each as ``parse_size``)."""
    parts = [p for p in str(spec).split(',') if p.strip()]
    if not parts:
        raise ValueError(f'{what}: no size given (e.g. 425x569,489x649)')
    return [parse_size(p, what, lo, hi) for p in parts]
