"""Unscaled labels: annotations that cannot be cut out but still locate an object."""

from __future__ import annotations

from typing import Optional, Tuple

from .coco import ann_to_rle
from .rules import box_reason, clipped_box

# Labels that cannot be cut out (no usable mask or box) but still locate an object:
# kept unscaled where the image's own pixels stay, dropped where they do not.
UNSCALED = ("bad_polygon", "bad_mask", "bad_box", "zero_size_box")


def unscaled_label(ann: dict, reason: str, image_id: int, width: int, height: int,
                   out_size: Optional[Tuple[int, int]] = None) -> Optional[dict]:
    """The output label of an annotation that cannot be cut out, kept as it is.

    Where its pixels stay (the image's own background) the object is still
    there, so its label stays: its mask if that is usable, else its box as a
    polygon; "unscaled" says which and why. `out_size` (W, H): the whole image
    was resized to it (image level). None when it locates nothing: dropped.
    """
    from pycocotools import mask as mask_utils

    from .coco import mask_to_rle, resample_mask

    if reason not in UNSCALED:
        return None
    out_w, out_h = out_size or (width, height)
    sx, sy = out_w / width, out_h / height
    rle = ann_to_rle(ann.get("segmentation"), height, width)
    if rle is not None and mask_utils.area(rle) > 0:
        mask = mask_utils.decode(rle)
        if out_size is not None:
            mask = resample_mask(mask, out_size)
        if not mask.any():
            return None
        segmentation = mask_to_rle(mask)
        x, y, w, h = (float(v) for v in mask_utils.toBbox({**segmentation, "counts": segmentation["counts"].encode()}))
        label = {"bbox": [x, y, w, h], "area": int(mask.sum()), "segmentation": segmentation,
                 "unscaled": {"reason": reason, "mask": "source"}}
    elif box_reason(ann.get("bbox"), width, height) is None:
        x, y, w, h = clipped_box(ann, width, height)
        x, y, w, h = x * sx, y * sy, w * sx, h * sy
        label = {"bbox": [round(v, 3) for v in (x, y, w, h)], "area": round(w * h, 3),
                 "segmentation": [[round(v, 3) for v in (x, y, x + w, y, x + w, y + h, x, y + h)]],
                 "unscaled": {"reason": reason, "mask": "box"}}
    else:
        return None
    return {"image_id": image_id, "category_id": ann["category_id"], **label, "iscrowd": 0,
            "source_ann_id": ann["id"]}
