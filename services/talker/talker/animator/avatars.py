"""Portraits: stylised faces drawn at run time (no image files, no copyright) plus user-mounted ones.

A mounted avatar is `<id>.png|.jpg|.jpeg` in TALKER_AVATARS_DIR with an optional `<id>.json`:
`{"name": "...", "mouth_box": [x0, y0, x1, y1]}` in the image's own pixels, the box centred on the
line between the lips with some margin around them. The image is centre-cropped to a square and
scaled to the video size. Images are decoded by the ffmpeg binary (no Pillow dependency).
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from talker.ffmpeg import ffmpeg_exe

log = logging.getLogger(__name__)

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Where the mouth usually is in a centred head-and-shoulders portrait (fractions of the square).
_DEFAULT_MOUTH_BOX = (0.39, 0.62, 0.61, 0.76)


@dataclass(frozen=True)
class Avatar:
    id: str
    name: str
    image: np.ndarray  # uint8 (size, size, 3) RGB
    mouth_box: tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels; the lip line runs through its middle

    @property
    def size(self) -> int:
        return int(self.image.shape[0])


@dataclass(frozen=True)
class Look:
    background_top: tuple[float, float, float]
    background_bottom: tuple[float, float, float]
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    hair_style: str  # "long" | "short" | "bun"
    iris: tuple[float, float, float]
    lips: tuple[float, float, float]
    shirt: tuple[float, float, float]


LOOKS: dict[str, tuple[str, Look]] = {
    "aria": ("Aria", Look(background_top=(0.55, 0.80, 0.85), background_bottom=(0.20, 0.45, 0.55),
                          skin=(0.96, 0.80, 0.69), hair=(0.35, 0.20, 0.12), hair_style="long",
                          iris=(0.20, 0.55, 0.35), lips=(0.80, 0.30, 0.35), shirt=(0.85, 0.35, 0.30))),
    "kai": ("Kai", Look(background_top=(0.95, 0.75, 0.45), background_bottom=(0.55, 0.30, 0.50),
                        skin=(0.72, 0.52, 0.38), hair=(0.08, 0.08, 0.10), hair_style="short",
                        iris=(0.30, 0.18, 0.10), lips=(0.58, 0.30, 0.28), shirt=(0.20, 0.30, 0.55))),
    "mei": ("Mei", Look(background_top=(0.92, 0.88, 0.95), background_bottom=(0.60, 0.55, 0.75),
                        skin=(0.98, 0.86, 0.76), hair=(0.12, 0.10, 0.10), hair_style="bun",
                        iris=(0.25, 0.15, 0.10), lips=(0.85, 0.38, 0.45), shirt=(0.25, 0.55, 0.45))),
}

# Face geometry in fractions of the image edge (shared by all drawn looks).
_LIP_LINE_Y = 0.64
_MOUTH_HALF_W = 0.07


class _Canvas:
    def __init__(self, size: int) -> None:
        self.size = size
        coords = (np.arange(size) + 0.5) / size
        self.x, self.y = np.meshgrid(coords, coords)
        self.rgb = np.zeros((size, size, 3))
        self.px = 1.0 / size

    def ellipse(self, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
        """Anti-aliased coverage (0..1) of an ellipse."""
        r = np.sqrt(((self.x - cx) / rx) ** 2 + ((self.y - cy) / ry) ** 2)
        distance = (r - 1.0) * min(rx, ry)
        return np.clip(0.5 - distance / self.px, 0.0, 1.0)

    def paint(self, coverage: np.ndarray, color: tuple[float, float, float], alpha: float = 1.0) -> None:
        a = (coverage * alpha)[..., None]
        self.rgb = self.rgb * (1 - a) + np.asarray(color) * a

    def to_uint8(self) -> np.ndarray:
        return np.clip(np.round(self.rgb * 255), 0, 255).astype(np.uint8)


def _shade(color: tuple[float, float, float], factor: float) -> tuple[float, float, float]:
    r, g, b = (min(1.0, c * factor) for c in color)
    return (r, g, b)


def draw_portrait(look: Look, size: int) -> np.ndarray:
    c = _Canvas(size)
    t = c.y[..., None]
    c.rgb = np.asarray(look.background_top) * (1 - t) + np.asarray(look.background_bottom) * t

    if look.hair_style == "long":
        c.paint(c.ellipse(0.5, 0.50, 0.32, 0.40), look.hair)
        c.paint(c.ellipse(0.5, 0.80, 0.31, 0.22), look.hair)
    if look.hair_style == "bun":
        c.paint(c.ellipse(0.5, 0.13, 0.10, 0.09), look.hair)
    c.paint(c.ellipse(0.5, 1.10, 0.46, 0.28), look.shirt)  # shoulders
    c.paint(c.ellipse(0.5, 0.80, 0.075, 0.14), _shade(look.skin, 0.88))  # neck
    c.paint(c.ellipse(0.26, 0.50, 0.035, 0.06), look.skin)  # ears
    c.paint(c.ellipse(0.74, 0.50, 0.035, 0.06), look.skin)
    c.paint(c.ellipse(0.5, 0.48, 0.24, 0.31), look.skin)  # face
    cap = c.ellipse(0.5, 0.28, 0.265, 0.16) * np.clip((0.33 - c.y) / c.px, 0, 1)
    c.paint(cap, look.hair)
    if look.hair_style == "short":
        c.paint(c.ellipse(0.265, 0.40, 0.02, 0.07), look.hair)
        c.paint(c.ellipse(0.735, 0.40, 0.02, 0.07), look.hair)

    for side in (-1, 1):
        ex = 0.5 + side * 0.09
        c.paint(c.ellipse(ex, 0.375, 0.05, 0.010), _shade(look.hair, 1.2))  # eyebrow
        c.paint(c.ellipse(ex, 0.43, 0.048, 0.026), (0.98, 0.98, 0.97))
        c.paint(c.ellipse(ex, 0.43, 0.020, 0.020), look.iris)
        c.paint(c.ellipse(ex, 0.43, 0.009, 0.009), (0.03, 0.03, 0.03))
        c.paint(c.ellipse(ex + 0.007, 0.423, 0.004, 0.004), (1.0, 1.0, 1.0))
        c.paint(c.ellipse(0.5 + side * 0.14, 0.56, 0.04, 0.025), (0.95, 0.45, 0.45), alpha=0.25)  # cheek
    c.paint(c.ellipse(0.5, 0.535, 0.022, 0.04), _shade(look.skin, 0.85), alpha=0.6)  # nose

    c.paint(c.ellipse(0.5, _LIP_LINE_Y - 0.011, _MOUTH_HALF_W, 0.016), _shade(look.lips, 0.9))  # upper lip
    c.paint(c.ellipse(0.5, _LIP_LINE_Y + 0.013, _MOUTH_HALF_W * 0.88, 0.020), look.lips)  # lower lip
    c.paint(c.ellipse(0.5, _LIP_LINE_Y, _MOUTH_HALF_W * 0.92, 0.0035), _shade(look.lips, 0.35))  # lip line
    return c.to_uint8()


def mouth_box_pixels(box: tuple[float, float, float, float], size: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = (round(v * size) for v in box)
    x0, y0 = min(max(0, x0), size - 4), min(max(0, y0), size - 4)  # at least a 4-pixel box inside the image
    x1, y1 = min(size, max(x1, x0 + 4)), min(size, max(y1, y0 + 4))
    return x0, y0, x1, y1


def drawn_avatar(avatar_id: str, size: int) -> Avatar:
    name, look = LOOKS[avatar_id]
    box = (0.5 - 0.11, _LIP_LINE_Y - 0.075, 0.5 + 0.11, _LIP_LINE_Y + 0.075)
    return Avatar(id=avatar_id, name=name, image=draw_portrait(look, size), mouth_box=mouth_box_pixels(box, size))


def decode_image(path: Path, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """RGB uint8 (size, size, 3) centre-cropped square of the image, and the image's original (w, h)."""
    argv = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-frames:v", "1",
            "-vf", f"crop='min(iw,ih)':'min(iw,ih)',scale={size}:{size}:flags=area",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    proc = subprocess.run(argv, capture_output=True, timeout=30, check=False)
    expected = size * size * 3
    if proc.returncode != 0 or len(proc.stdout) != expected:
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        raise ValueError(f"cannot decode image {path.name}: {tail[0]}")
    match = re.search(r"Video: .*?, (\d{1,5})x(\d{1,5})", proc.stderr.decode("utf-8", "replace"))
    original = (int(match.group(1)), int(match.group(2))) if match else (size, size)
    return np.frombuffer(proc.stdout, dtype=np.uint8).reshape(size, size, 3).copy(), original


def mounted_avatar(path: Path, size: int) -> Avatar:
    """Raises ValueError for anything wrong with the files, so one bad avatar is skipped, not fatal."""
    avatar_id = path.stem
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    if not isinstance(meta, dict):
        raise ValueError(f"{meta_path.name} must hold a JSON object")
    image, (w, h) = decode_image(path, size)
    box = _DEFAULT_MOUTH_BOX
    if "mouth_box" in meta:
        side = min(w, h)
        off_x, off_y = (w - side) / 2, (h - side) / 2
        try:
            x0, y0, x1, y1 = (float(v) for v in meta["mouth_box"])
        except (TypeError, ValueError):
            raise ValueError(f"{meta_path.name}: mouth_box must be [x0, y0, x1, y1] in image pixels") from None
        box = ((x0 - off_x) / side, (y0 - off_y) / side, (x1 - off_x) / side, (y1 - off_y) / side)
        if not (0.0 <= box[0] < box[2] <= 1.0 and 0.0 <= box[1] < box[3] <= 1.0):
            raise ValueError(f"{meta_path.name}: mouth_box {meta['mouth_box']} is not inside the centre-cropped "
                             f"{side}x{side} square of the {w}x{h} image")
    return Avatar(id=avatar_id, name=str(meta.get("name", avatar_id)), image=image,
                  mouth_box=mouth_box_pixels(box, size))


def load_avatars(avatars_dir: Path | None, size: int) -> dict[str, Avatar]:
    """Drawn avatars first, then mounted ones (a mounted file with a drawn avatar's id replaces it)."""
    avatars = {avatar_id: drawn_avatar(avatar_id, size) for avatar_id in LOOKS}
    if avatars_dir is None or not avatars_dir.is_dir():
        return avatars
    for path in sorted(avatars_dir.iterdir()):
        if path.suffix.lower() not in _IMAGE_SUFFIXES:
            continue
        if not _SAFE_ID.match(path.stem):
            log.warning("avatar file %r skipped: its name is not a usable id", path.name)
            continue
        try:
            avatars[path.stem] = mounted_avatar(path, size)
        except (ValueError, OSError, subprocess.SubprocessError) as exc:
            log.warning("avatar %s skipped: %s", path.name, exc)
    return avatars
