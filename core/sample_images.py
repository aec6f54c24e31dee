"""Synthetic images for the sample corpus: anatomy-like phantoms and burned-in text.

The phantoms are cheap numpy drawings that look like the real thing at a
glance (a CT chest slice, an MR head, a chest radiograph, an ultrasound
sector) so that "pixels outside the text are unchanged" and text detection are
meaningful: text sits on textured anatomy or on a banner, never on a flat field.

:class:`Canvas` burns text into the pixels and records, for every item, its
box, the frames it is on and its exact glyph pixels (the answer key's masks).

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> canvas = Canvas(ct_slice(rng, 128) + 1024, max_value=4095)
>>> item = canvas.text("WW 400 WL 40", (4, 4), font="dejavu-sans-mono", size=12,
...                    color=4095, is_phi=False, kind="LABEL")
>>> item.box[:2], item.mask.dtype.name, bool(item.mask.any())
((4, 4), 'bool', True)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from .errors import ConfigurationError

#: Font names usable in :meth:`Canvas.text`, mapped to the TrueType file (Debian
#: ``fonts-dejavu-core``); ``pillow-default`` is Pillow's built-in scalable font and
#: ``pillow-bitmap`` its old fixed-size bitmap font.
FONT_FILES = {
    "dejavu-sans-mono": "DejaVuSansMono.ttf",
    "dejavu-sans": "DejaVuSans.ttf",
    "dejavu-sans-bold": "DejaVuSans-Bold.ttf",
    "dejavu-serif": "DejaVuSerif.ttf",
}
FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/TTF", "/usr/local/share/fonts")
#: The faces Debian ships in ``fonts-dejavu-core``; the other faces (condensed, oblique,
#: ``benchmarks/quality.py --faces``) are in ``fonts-dejavu-extra``.
_CORE_FILES = frozenset(
    f"DejaVu{face}.ttf"
    for face in ("Sans", "Sans-Bold", "SansMono", "SansMono-Bold", "Serif", "Serif-Bold")
)

AnyFont = ImageFont.FreeTypeFont | ImageFont.ImageFont


@functools.lru_cache(maxsize=64)
def load_font(name: str, size: int) -> AnyFont:
    """Return a font by its corpus name; fail clearly when a system font is missing.

    Examples
    --------
    >>> load_font("pillow-default", 14).size
    14
    """
    if name == "pillow-default":
        return ImageFont.load_default(size=size)
    if name == "pillow-bitmap":
        return ImageFont.load_default_imagefont()
    try:
        filename = FONT_FILES[name]
    except KeyError:
        raise ConfigurationError(f"unknown corpus font {name!r}") from None
    for folder in ("", *FONT_DIRS):
        try:
            return ImageFont.truetype(f"{folder}/{filename}" if folder else filename, size)
        except OSError:
            continue
    extra = filename.startswith("DejaVu") and filename not in _CORE_FILES
    package = "fonts-dejavu-extra" if extra else "fonts-dejavu-core"
    raise ConfigurationError(
        f"font {filename} not found: install the Debian package {package} "
        "(`make install` does, as root)"
    )


def check_fonts() -> None:
    """Raise :class:`ConfigurationError` unless every corpus font can be loaded."""
    for name in FONT_FILES:
        load_font(name, 12)


@dataclass
class TextItem:
    """One burned-in text item: what the answer key records about it."""

    text: str
    is_phi: bool
    kind: str
    frames: list[int]
    box: tuple[int, int, int, int]  # x, y, width, height
    mask: np.ndarray = field(repr=False)  # bool, shape (height, width): glyph pixels
    rotation: int
    font: str
    size: int


def render_alpha(text: str, font: str, size: int, rotation: int = 0) -> np.ndarray:
    """Render text as coverage (float 0..1), cropped to its ink, optionally rotated 90°."""
    fnt = load_font(font, size)
    left, top, right, bottom = fnt.getbbox(text)
    width, height = int(right - left) + 4, int(bottom - top) + 4
    img = Image.new("L", (width, height), 0)
    ImageDraw.Draw(img).text((2 - left, 2 - top), text, fill=255, font=fnt)
    alpha = np.asarray(img, dtype=np.float64) / 255.0
    ys, xs = np.nonzero(alpha > 0)
    alpha = alpha[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    if rotation == 90:
        alpha = np.rot90(alpha)  # reads bottom to top
    elif rotation == 270:
        alpha = np.rot90(alpha, -1)
    elif rotation != 0:
        raise ValueError("rotation must be 0, 90 or 270")
    return np.ascontiguousarray(alpha)


class Canvas:
    """Pixels of one image (all frames) plus the text burned into them.

    Parameters
    ----------
    pixels
        ``(rows, cols)``, ``(rows, cols, 3)``, ``(frames, rows, cols)`` or
        ``(frames, rows, cols, 3)``; copied to float64.
    max_value
        Largest stored value (for clipping when compositing).
    min_value
        Smallest stored value.
    frames
        Number of frames when ``pixels`` has a frame axis.
    """

    def __init__(
        self,
        pixels: np.ndarray,
        *,
        max_value: float,
        min_value: float = 0.0,
        frames: int | None = None,
    ) -> None:
        arr = np.asarray(pixels, dtype=np.float64)
        if frames is None:
            arr = arr[np.newaxis]
        if arr.ndim == 3:
            arr = arr[..., np.newaxis]
        self.pixels = arr.copy()  # (frames, rows, cols, samples)
        self.max_value = max_value
        self.min_value = min_value
        self.items: list[TextItem] = []

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, columns)``."""
        return int(self.pixels.shape[1]), int(self.pixels.shape[2])

    def text(
        self,
        text: str,
        xy: tuple[int, int],
        *,
        font: str,
        size: int,
        color: float | tuple[float, float, float],
        is_phi: bool,
        kind: str,
        anchor: str = "lt",
        rotation: int = 0,
        frames: list[int] | None = None,
    ) -> TextItem:
        """Burn ``text`` at ``xy`` and record it.

        ``anchor``: ``l``/``r`` (x is the left or right edge) then ``t``/``b``
        (y is the top or bottom edge). Items may not overlap (with an 8-pixel
        gap) on a shared frame: the scorer's boxes must be unambiguous.
        """
        alpha = render_alpha(text, font, size, rotation)
        height, width = alpha.shape
        x, y = xy
        if anchor[0] == "r":
            x -= width
        if anchor[1] == "b":
            y -= height
        rows, cols = self.shape
        if x < 0 or y < 0 or x + width > cols or y + height > rows:
            raise ValueError(f"text {text!r} ({width}x{height} at {x},{y}) leaves the image")
        all_frames = list(range(self.pixels.shape[0]))
        use = all_frames if frames is None else frames
        box = (x, y, width, height)
        for other in self.items:
            if set(other.frames) & set(use) and _boxes_touch(box, other.box, gap=8):
                raise ValueError(f"text {text!r} overlaps {other.text!r}")
        colour = np.atleast_1d(np.asarray(color, dtype=np.float64))
        a = alpha[..., np.newaxis]
        for f in use:
            region = self.pixels[f, y : y + height, x : x + width, :]
            region[...] = region * (1.0 - a) + colour * a
        item = TextItem(text, is_phi, kind, use, box, alpha >= 0.5, rotation, font, size)
        self.items.append(item)
        return item

    def stored(self, dtype: type[np.generic] | np.dtype[np.generic]) -> np.ndarray:
        """Return the pixels rounded into ``dtype`` in DICOM layout.

        ``(rows, cols)`` or ``(rows, cols, 3)`` for one frame, with a leading
        frame axis otherwise.
        """
        arr = np.clip(np.rint(self.pixels), self.min_value, self.max_value).astype(dtype)
        if arr.shape[-1] == 1:
            arr = arr[..., 0]
        return arr[0] if arr.shape[0] == 1 else arr


def _boxes_touch(a: tuple[int, int, int, int], b: tuple[int, int, int, int], gap: int) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return not (
        ax + aw + gap <= bx or bx + bw + gap <= ax or ay + ah + gap <= by or by + bh + gap <= ay
    )


# --- phantoms ----------------------------------------------------------------------------------


def _ellipse(shape: tuple[int, int], cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return np.asarray(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0)


def _texture(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return np.asarray(noise / (noise.std() + 1e-9))


def ct_slice(rng: np.random.Generator, size: int = 512) -> np.ndarray:
    """A chest CT slice in Hounsfield units (-2000 padding outside the circular field of view).

    Examples
    --------
    >>> hu = ct_slice(np.random.default_rng(1), 64)
    >>> hu.shape, float(hu.min())
    ((64, 64), -2000.0)
    """
    s = (size, size)
    c = size / 2
    hu = np.full(s, -1000.0)
    body = _ellipse(s, c + size * 0.02, c, size * 0.33, size * 0.43)
    hu[body] = -90.0  # fat
    inner = _ellipse(s, c + size * 0.02, c, size * 0.29, size * 0.39)
    hu[inner] = 40.0  # muscle, soft tissue
    for side in (-1, 1):
        lung = _ellipse(s, c - size * 0.01, c + side * size * 0.18, size * 0.22, size * 0.14)
        hu[lung] = -830.0 + 60.0 * _texture(rng, s, size / 100)[lung]
        vessels = lung & (ndimage.gaussian_filter(rng.standard_normal(s), size / 250) > 2.2)
        hu[vessels] = -60.0
    heart = _ellipse(s, c + size * 0.05, c + size * 0.05, size * 0.12, size * 0.13)
    hu[heart] = 45.0
    hu[_ellipse(s, c - size * 0.06, c - size * 0.03, size * 0.035, size * 0.035)] = 180.0  # aorta
    spine = _ellipse(s, c + size * 0.25, c, size * 0.05, size * 0.05)
    hu[spine] = 650.0
    hu[_ellipse(s, c + size * 0.25, c, size * 0.03, size * 0.03)] = 250.0  # marrow
    hu += 14.0 * _texture(rng, s, 0.8)
    fov = _ellipse(s, c, c, size * 0.49, size * 0.49)
    hu[~fov] = -2000.0
    return np.asarray(np.clip(hu, -2000, 3000))


def mr_head(rng: np.random.Generator, size: int = 320) -> np.ndarray:
    """A T1-like axial MR head, unsigned 12-bit values."""
    s = (size, size)
    c = size / 2
    img = 25.0 + 8.0 * np.abs(_texture(rng, s, 1.0))
    scalp = _ellipse(s, c, c, size * 0.42, size * 0.35)
    img[scalp] = 1700.0
    skull = _ellipse(s, c, c, size * 0.39, size * 0.32)
    img[skull] = 180.0
    brain = _ellipse(s, c, c, size * 0.36, size * 0.29)
    gyri = _texture(rng, s, size / 60)
    img[brain] = 1050.0 + 260.0 * np.tanh(gyri[brain])
    for side in (-1, 1):
        img[_ellipse(s, c - size * 0.03, c + side * size * 0.05, size * 0.09, size * 0.03)] = 320.0
    img += 30.0 * _texture(rng, s, 0.7)
    return np.asarray(np.clip(img, 0, 4095))


def chest_radiograph(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """A PA chest radiograph, MONOCHROME2 (bright bone), unsigned 12-bit values."""
    s = (rows, cols)
    img = np.full(s, 300.0)
    body = _ellipse(s, rows * 0.55, cols * 0.5, rows * 0.52, cols * 0.42)
    img[body] = 2300.0
    for side in (-1, 1):
        lung = _ellipse(s, rows * 0.45, cols * (0.5 + side * 0.17), rows * 0.3, cols * 0.13)
        img[lung] = 900.0
    img[_ellipse(s, rows * 0.55, cols * 0.53, rows * 0.16, cols * 0.12)] = 2500.0  # heart
    img[:, int(cols * 0.47) : int(cols * 0.53)] += (
        700.0 * body[:, int(cols * 0.47) : int(cols * 0.53)]
    )
    yy, xx = np.mgrid[:rows, :cols]
    for k in range(9):  # ribs: arcs falling towards the sides
        y0 = rows * (0.2 + 0.065 * k)
        centre = y0 + rows * 0.12 * ((xx - cols / 2) / (cols / 2)) ** 2
        arc = np.abs(yy - centre) < rows * 0.007
        img[arc & body] += 450.0
    img = ndimage.gaussian_filter(img, rows / 300) + 60.0 * _texture(rng, s, rows / 200)
    img += 25.0 * rng.standard_normal(s)
    return np.asarray(np.clip(img, 0, 4095))


@functools.lru_cache(maxsize=4)
def _sector_geometry(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Radius, sector mask and depth attenuation of an ultrasound fan (shared by frames)."""
    yy, xx = np.mgrid[:rows, :cols].astype(np.float64)
    apex_y, apex_x = rows * 0.08, cols / 2
    r = np.hypot(yy - apex_y, xx - apex_x)
    theta = np.arctan2(xx - apex_x, yy - apex_y)
    sector = (np.abs(theta) < 0.62) & (r > rows * 0.05) & (r < rows * 0.9)
    for arr in (r, sector):
        arr.setflags(write=False)
    attenuation = 150.0 * np.exp(-r / (rows * 1.6))
    attenuation.setflags(write=False)
    return r, sector, attenuation


def ultrasound_frame(
    rng: np.random.Generator, rows: int, cols: int, *, phase: float = 0.0
) -> np.ndarray:
    """A B-mode sector (8-bit grey values), with a cyst and tissue layers that move with phase."""
    s = (rows, cols)
    r, sector, attenuation = _sector_geometry(rows, cols)
    layers = 0.6 + 0.4 * np.sin(r / rows * 18 + phase)
    cyst = _ellipse(s, rows * (0.55 + 0.03 * np.sin(phase)), cols * 0.55, rows * 0.1, cols * 0.08)
    tissue = layers * (1.0 - 0.8 * cyst)
    speckle = rng.rayleigh(0.5, s)
    img = np.where(sector, tissue * speckle * attenuation, 0.0)
    return np.asarray(np.clip(ndimage.gaussian_filter(img, 0.8), 0, 255))


def window_to_8bit(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """Linear window to 0..255 (for screenshots of other images)."""
    lo = center - width / 2
    return np.asarray(np.clip((values - lo) / width * 255.0, 0, 255))
