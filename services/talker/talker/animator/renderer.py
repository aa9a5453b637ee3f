"""Torch mouth warp: opens a portrait's mouth by the per-frame openness, many frames per batch.

Inside the mouth box the lower lip is pushed down and the upper lip up (a `grid_sample` warp that is
the identity at the box edges, so there is no seam), and the gap between them is filled with a dark
mouth interior and a row of teeth. Openness 0 leaves the frame bit-identical to the portrait.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from talker.accelerators import DevicePool, DeviceUnavailable, device_type, resolve_devices
from talker.animator.avatars import Avatar
from talker.engine_contract import Cancelled, ShouldStop

__all__ = ["DeviceUnavailable", "MouthRenderer", "RendererPool", "resolve_device"]

# Gap at full openness, in half-heights of the mouth box: the lower lip (jaw) moves more than the upper.
_LOWER_LIP_TRAVEL = 0.60
_UPPER_LIP_TRAVEL = 0.20
# The mouth corners sit at this fraction of the box's half-width (the box has a margin around the lips).
LIP_CORNER = 0.65
_INTERIOR = (0.22, 0.05, 0.07)
_TEETH = (0.95, 0.94, 0.90)


def resolve_device(setting: str) -> str:
    """auto -> cuda when torch sees a GPU, else cpu. An explicit "cuda" without one is a configuration error
    (failing at startup beats silently running many times slower than the operator planned for).
    Every GPU is used: see talker.accelerators.resolve_devices."""
    return device_type(resolve_devices(setting, torch.cuda)[0])


class MouthRenderer:
    def __init__(self, avatar: Avatar, device: str = "cpu") -> None:
        self.avatar = avatar
        self.device = torch.device(device)
        self.size = avatar.size
        self._base = torch.from_numpy(avatar.image).to(self.device)  # (H, W, 3) uint8
        x0, y0, x1, y1 = avatar.mouth_box
        self._box = (x0, y0, x1, y1)
        crop = self._base[y0:y1, x0:x1].permute(2, 0, 1).float() / 255.0  # (3, h, w)
        self._crop = crop.unsqueeze(0)
        h, w = y1 - y0, x1 - x0
        self._v = torch.linspace(-1.0, 1.0, h, device=self.device).view(1, h, 1)
        self._u = torch.linspace(-1.0, 1.0, w, device=self.device).view(1, 1, w)
        # Mouth corners stay put; the middle opens most (an elliptical opening).
        self._profile = torch.clamp(1.0 - (self._u / LIP_CORNER) ** 2, min=0.0) ** 0.5
        self._pixel_v = 2.0 / max(h - 1, 1)
        interior = torch.tensor(_INTERIOR, device=self.device).view(1, 3, 1, 1)
        teeth = torch.tensor(_TEETH, device=self.device).view(1, 3, 1, 1)
        self._interior, self._teeth = interior, teeth

    def _warp(self, openness: torch.Tensor) -> torch.Tensor:
        """Mouth crops (n, 3, h, w) float for openness (n,)."""
        n = openness.shape[0]
        o = openness.view(n, 1, 1)
        lower = _LOWER_LIP_TRAVEL * o * self._profile  # (n, 1, w)
        upper = _UPPER_LIP_TRAVEL * o * self._profile
        v = self._v
        below = (v - lower) / (1.0 - lower)  # maps [lower, 1] onto [0, 1]
        above = (v + upper) / (1.0 - upper)  # maps [-1, -upper] onto [-1, 0]
        src_v = torch.where(v >= lower, below, torch.where(v <= -upper, above, torch.zeros_like(below)))
        src_u = self._u.expand_as(src_v)
        grid = torch.stack((src_u, src_v), dim=-1)  # (n, h, w, 2)
        warped = F.grid_sample(self._crop.expand(n, -1, -1, -1), grid, mode="bilinear", padding_mode="border",
                               align_corners=True)
        # Soft one-pixel edges; the product is exactly 0 when the gap is closed.
        px = self._pixel_v
        gap = (torch.clamp((lower - v) / px, 0.0, 1.0) * torch.clamp((v + upper) / px, 0.0, 1.0)).unsqueeze(1)
        teeth_edge = -upper + 0.3 * (upper + lower)
        teeth = torch.clamp((teeth_edge - v) / px, 0.0, 1.0).unsqueeze(1)
        fill = self._interior + (self._teeth - self._interior) * teeth
        return warped * (1.0 - gap) + fill * gap

    @torch.inference_mode()
    def render(self, openness: np.ndarray) -> np.ndarray:
        """Frames (n, H, W, 3) uint8 for openness values (n,)."""
        o = torch.as_tensor(np.asarray(openness, dtype=np.float32), device=self.device).clamp(0.0, 1.0)
        n = o.shape[0]
        frames = self._base.unsqueeze(0).repeat(n, 1, 1, 1)
        moving = torch.nonzero(o > 0).flatten()
        if moving.numel():
            x0, y0, x1, y1 = self._box
            crops = (self._warp(o[moving]) * 255.0).round().clamp(0, 255).to(torch.uint8)
            frames[moving, y0:y1, x0:x1] = crops.permute(0, 2, 3, 1)
        return frames.cpu().numpy()

    def render_batches(self, openness: np.ndarray, *, batch_size: int = 32,
                       should_stop: ShouldStop = lambda: False) -> Iterator[np.ndarray]:
        for start in range(0, len(openness), batch_size):
            if should_stop():
                raise Cancelled("rendering cancelled")
            yield self.render(openness[start:start + batch_size])


class RendererPool:
    """One MouthRenderer per device for one avatar; each batch renders on the device the shared DevicePool
    says is least busy, so concurrent requests spread over every GPU. Same interface as MouthRenderer."""

    def __init__(self, avatar: Avatar, pool: DevicePool) -> None:
        self.avatar = avatar
        self.size = avatar.size
        self._pool = pool
        self._renderers = [MouthRenderer(avatar, device) for device in pool.devices]

    @property
    def devices(self) -> list[str]:
        return [str(r.device) for r in self._renderers]

    def render(self, openness: np.ndarray) -> np.ndarray:
        with self._pool.use() as index:
            return self._renderers[index].render(openness)

    def render_batches(self, openness: np.ndarray, *, batch_size: int = 32,
                       should_stop: ShouldStop = lambda: False) -> Iterator[np.ndarray]:
        for start in range(0, len(openness), batch_size):
            if should_stop():
                raise Cancelled("rendering cancelled")
            yield self.render(openness[start:start + batch_size])
