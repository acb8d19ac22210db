"""TransformOptions: the options of an SM+ run, validated when built (the CLI's flags, by the same names)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

from .coco import JPEG_QUALITY, JPEG_SUBSAMPLING, JPEG_SUBSAMPLINGS
from .errors import UsageError

MODES = ("msm", "rsm", "cp", "cp+")
COPY_PASTE = ("cp", "cp+")  # paper Table 6: instances pasted unscaled onto a new background
BACKGROUNDS = ("psi", "inpaint", "new")
LEVELS = ("instance", "image")  # image: the original Scale Match (Yu et al., WACV 2020)
BACKGROUND_POOLS = ("all", "clean")
# clean pool: images whose scale-matched objects (crowds included) cover at most
# --max-background-objects of the frame (mask area); those objects are erased
# with the fill. On coco_tiny 21 % (val) and 25 % (train) of the images qualify
# at 0.1 with all categories, 68 % and 75 % with persons alone (scripts/background_pool.py).
DEFAULT_MAX_BACKGROUND_OBJECTS = 0.1
DEFAULT_MAX_HOLE = 0.5  # a hole over this share of the image: a new background instead (README: measured)
FILLS = ("patchmatch", "telea")  # as background.FILLS (options stay free of pixel code)


@dataclass(frozen=True)
class TransformOptions:
    mode: str = "msm"
    seed: int = 0
    psi_p: float = 0.4
    categories: Optional[Tuple[int, ...]] = None  # scale-matched category ids; None = all
    background: str = "psi"
    level: str = "instance"
    scale_range: Tuple[float, float] = (0.1, 1.0)  # image level: allowed image scales
    background_pool: str = "clean"  # all: any image, its objects kept (the paper); clean: see pool_images
    max_background_objects: float = DEFAULT_MAX_BACKGROUND_OBJECTS  # clean pool: share of the frame
    max_hole: float = DEFAULT_MAX_HOLE  # render: holes above this fraction are not inpainted
    jpeg_quality: int = JPEG_QUALITY
    jpeg_subsampling: str = JPEG_SUBSAMPLING
    fill: str = "patchmatch"  # render: how holes are filled (background.FILLS); telea: the paper's


    def __post_init__(self):
        if self.mode not in MODES:
            raise UsageError(f"--mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise UsageError(f"--seed must be a non-negative integer, got {self.seed!r}")
        if not (isinstance(self.psi_p, (int, float)) and 0.0 <= self.psi_p <= 1.0):
            raise UsageError(f"--psi-p must be in [0, 1], got {self.psi_p!r}")
        if self.level not in LEVELS:
            raise UsageError(f"--level must be one of {', '.join(LEVELS)}, got {self.level!r}")
        if self.level == "image" and self.mode in COPY_PASTE:
            raise UsageError(f"--level image goes with --mode msm or rsm, not {self.mode}")
        lo, hi = self.scale_range
        if not (isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and 0 < lo <= hi < math.inf):
            raise UsageError(f"--scale-range must be two finite numbers 0 < LOW <= HIGH, got {lo!r} {hi!r}")
        if self.background not in BACKGROUNDS:
            raise UsageError(f"--background must be one of {', '.join(BACKGROUNDS)}, got {self.background!r}")
        if self.background_pool not in BACKGROUND_POOLS:
            raise UsageError(f"--background-pool must be one of {', '.join(BACKGROUND_POOLS)}, "
                             f"got {self.background_pool!r}")
        if not (isinstance(self.max_background_objects, (int, float)) and 0.0 <= self.max_background_objects <= 1.0):
            raise UsageError(f"--max-background-objects must be a fraction in [0, 1], got {self.max_background_objects!r}")
        if not (isinstance(self.max_hole, (int, float)) and 0.0 < self.max_hole <= 1.0):
            raise UsageError(f"--max-hole must be a fraction in (0, 1], got {self.max_hole!r}")
        if not (isinstance(self.jpeg_quality, int) and 1 <= self.jpeg_quality <= 100):
            raise UsageError(f"--jpeg-quality must be an integer in [1, 100], got {self.jpeg_quality!r}")
        if self.jpeg_subsampling not in JPEG_SUBSAMPLINGS:
            raise UsageError(f"--jpeg-subsampling must be one of {', '.join(JPEG_SUBSAMPLINGS)}, "
                             f"got {self.jpeg_subsampling!r}")
        if self.fill not in FILLS:
            raise UsageError(f"--fill must be one of {', '.join(FILLS)}, got {self.fill!r}")
