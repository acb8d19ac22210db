"""Erased new backgrounds are filled once per worker and reused: same bytes as filling each time."""

import cv2
import numpy as np
import pytest

from smplus import render
from smplus.coco import mask_to_rle, read_image_bytes
from smplus.executors import _Dealer
from smplus.grain import grain_range
from smplus.plan import ImagePlan
from smplus.render import ErasedBackgrounds, NewBackground, fill
from smplus.task import ImageTask, together_by_background

from conftest import FIXTURE_IMAGES, OTHER, larger_set, run, tree


@pytest.fixture
def photo():
    image = cv2.imread(f"{FIXTURE_IMAGES}/{OTHER}")
    mask = np.zeros(image.shape[:2], np.uint8)
    mask[100:160, 200:260] = 1
    return image, [mask_to_rle(mask)]


def test_a_kept_background_is_the_fill_byte_for_byte(photo):
    image, rles = photo
    kept = ErasedBackgrounds()
    first, f1 = kept.erased(7, image.copy(), rles, "telea")
    first[:] = 0  # the caller pastes into what it gets: the kept copy must not change
    second, f2 = kept.erased(7, image.copy(), rles, "telea")
    fresh, f3 = fill(image.copy(), rles, method="telea")
    assert (kept.hits, kept.misses) == (1, 1)
    assert np.array_equal(second, fresh) and f1 == f2 == f3 > 0
    assert not np.array_equal(second, image)  # the hole was filled


def test_a_key_names_one_result(photo):
    image, rles = photo
    kept = ErasedBackgrounds()
    kept.erased(7, image, rles, "telea")
    other = image.copy()
    other[0, 0] ^= 1  # same id, other pixels (another dataset in the same process)
    more = np.zeros(image.shape[:2], np.uint8)
    more[10:20, 10:20] = 1
    moved = [mask_to_rle(more)]
    for args in ((8, image, rles, "telea"), (7, other, rles, "telea"), (7, image, rles, "patchmatch"),
                 (7, image, rles + moved, "telea")):
        kept.erased(*args)
    assert (kept.hits, kept.misses) == (0, 5)


def test_at_most_the_last_few_are_kept(photo):
    image, rles = photo
    kept = ErasedBackgrounds(entries=2)
    for image_id in (1, 2, 3, 1):
        kept.erased(image_id, image, rles, "telea")
    assert (kept.hits, kept.misses) == (0, 4)  # 1 was evicted by 3
    kept.erased(3, image, rles, "telea")
    assert kept.hits == 1
    assert len(kept._kept) == 2
    small = ErasedBackgrounds(max_bytes=image.nbytes - 1)  # larger than the bound: never kept
    small.erased(1, image, rles, "telea")
    small.erased(1, image, rles, "telea")
    assert (small.hits, small.misses) == (0, 2)


def test_a_kept_background_from_a_file_is_not_decoded_again(photo):
    """Its file's bytes name it: a kept erasure spares the decode, and gives the photo's grain range."""
    image, rles = photo
    data = read_image_bytes(f"{FIXTURE_IMAGES}/{OTHER}")
    decoded = []

    def background(data=data):
        return NewBackground.of_file(data, *image.shape[:2], lambda: decoded.append(1) or cv2.imdecode(data, cv2.IMREAD_COLOR))

    kept = ErasedBackgrounds()
    for erase in (rles, []):  # with nothing to erase too: the decode is what is spared
        first, second = background(), background()
        a, fa = kept.erased(7, first, erase, "telea")
        decoded_before = len(decoded)
        b, fb = kept.erased(7, second, erase, "telea")
        assert len(decoded) == decoded_before  # the second one never decoded
        fresh, f = fill(image.copy(), erase, method="telea")
        assert np.array_equal(a, fresh) and np.array_equal(b, fresh) and fa == fb == f
        assert second.grain == first.grain == grain_range(image)
    assert (kept.hits, kept.misses) == (2, 2) and len(decoded) == 2
    changed = data.copy()
    changed[-3] ^= 0xFF  # other bytes under the same id (another dataset in the same process): another key
    kept.erased(7, background(changed), rles, "telea")
    assert (kept.hits, kept.misses) == (2, 3)


def _plan(image_id, background_image_id=None):
    return ImagePlan(image_id=image_id, width=10, height=10,
                     background="new" if background_image_id is not None else "inpaint",
                     background_image_id=background_image_id)


def test_render_order_puts_the_images_of_one_background_together():
    plans = [_plan(0, 5), _plan(1), _plan(2, 6), _plan(3, 5), _plan(4, 6), _plan(5), _plan(6, 5)]
    order = together_by_background(plans, range(7))
    assert order == [0, 3, 6, 1, 2, 4, 5]
    assert together_by_background(plans, [4, 2, 1]) == [4, 2, 1]


def test_a_worker_is_dealt_the_background_it_was_last_given():
    backgrounds = [5, 6, 5, 6, 5, None, 6]
    tasks = [ImageTask(_plan(i, b), {}, {}, "", "") for i, b in enumerate(backgrounds)]
    dealer = _Dealer(tasks, 2)
    got = {0: [], 1: []}
    for k in (0, 1, 0, 1, 0, 1, 0, 1):
        task = dealer.next_for(k)
        if task is not None:
            got[k].append(task.plan.background_image_id)
    assert got[0] == [5, 5, 5, None] and got[1] == [6, 6, 6]


def test_a_run_reusing_erased_backgrounds_writes_the_same_bytes(tmp_path, monkeypatch):
    source, images = larger_set(tmp_path, copies=2)
    outputs = []
    for kept in (ErasedBackgrounds(), ErasedBackgrounds(entries=0)):
        monkeypatch.setattr(render, "ERASED", kept)
        out = tmp_path / f"out{len(outputs)}"
        report, _ = run(source, images, out, None, background="new", fill="telea")  # the bundled prior
        outputs.append(tree(out))
        if kept.entries:
            assert kept.hits > 0, (kept.hits, kept.misses)
            assert report["counts"]["background_objects_erased"] > 0
        else:
            assert kept.hits == 0
    assert outputs[0] == outputs[1]


def test_threads_sharing_the_kept_backgrounds_get_the_fill(photo):
    """A loader's threads share one process's kept backgrounds: every caller still gets the fill."""
    import threading

    image, rles = photo
    fresh, _ = fill(image.copy(), rles, method="telea")
    kept, wrong, failed = ErasedBackgrounds(entries=3), [], []

    def work():
        try:
            for i in range(20):
                canvas, _ = kept.erased(i % 5, image, rles, "telea")
                wrong.extend([i] if not np.array_equal(canvas, fresh) else [])
        except Exception as e:  # an OrderedDict changed under another thread's feet
            failed.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failed and not wrong
    assert kept.hits + kept.misses == 80 and kept.hits > 0 and len(kept._kept) == 3


def test_pixels_handed_over_with_nothing_to_erase_are_not_kept(photo):
    """A caller handing pixels (SMPlus per sample) with nothing to erase gets a copy: no digest, nothing kept."""
    image, _ = photo
    kept = ErasedBackgrounds()
    for background in (image, NewBackground.of_pixels(image)):  # (render_image hands the latter)
        canvas, fraction = kept.erased(7, background, [], "telea")
        assert np.array_equal(canvas, image) and canvas is not image and fraction == 0.0
    assert (kept.hits, kept.misses, len(kept._kept)) == (0, 0, 0)
