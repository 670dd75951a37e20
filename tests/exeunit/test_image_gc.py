"""Which images loaded from peers a provider removes, and when (issue 11 row 9). Pure: the clock is a number."""

from __future__ import annotations

from exeunit.image_gc import ImageBounds, ImagePolicy
from exeunit.runtime import PeerImage

GiB = 2**30


def img(n: int, *, in_use: bool = False, size: int = GiB) -> PeerImage:
    return PeerImage(image_id=f"sha256:{n:064x}", size=size, in_use=in_use)


def test_unused_images_go_after_the_grace_used_ones_never() -> None:
    p = ImagePolicy(ImageBounds(grace_s=600))
    a, b = img(1), img(2, in_use=True)
    assert p.select([a, b], now=0) == []  # first seen: the grace starts
    assert p.select([a, b], now=599) == []
    assert p.select([a, b], now=600) == [a.image_id]
    p.removed(a.image_id)
    assert p.select([b], now=10_000) == []  # in use: kept however long


def test_a_use_restarts_the_grace() -> None:
    p = ImagePolicy(ImageBounds(grace_s=600))
    p.select([img(1)], now=0)
    p.select([img(1, in_use=True)], now=500)  # an activity ran on it
    assert p.select([img(1)], now=1000) == []
    assert p.select([img(1)], now=1100) == [img(1).image_id]
    p2 = ImagePolicy(ImageBounds(grace_s=600))
    p2.used(img(2).image_id, 700)  # just loaded
    assert p2.select([img(2)], now=1200) == []


def test_at_start_every_unused_image_goes() -> None:
    p = ImagePolicy(ImageBounds(grace_s=600))
    assert p.select([img(1), img(2, in_use=True), img(3)], now=0, at_start=True) == [img(1).image_id, img(3).image_id]


def test_over_the_bounds_the_least_recently_used_go_first() -> None:
    p = ImagePolicy(ImageBounds(grace_s=10_000, max_images=3, max_bytes=100 * GiB, min_keep_s=60))
    images = [img(n) for n in range(1, 6)]
    for n, i in enumerate(images):
        p.used(i.image_id, now=n * 100)
    # 5 images, 3 allowed: the two least recently used (1 and 2) go, in that order.
    assert p.select(images, now=1000) == [images[0].image_id, images[1].image_id]
    # By bytes: 3 x 1 GiB over a 2 GiB bound; the in-use one is spared even if oldest.
    q = ImagePolicy(ImageBounds(grace_s=10_000, max_images=16, max_bytes=2 * GiB, min_keep_s=60))
    old_in_use, mid, new = img(1, in_use=True), img(2), img(3)
    q.used(old_in_use.image_id, 0)
    q.used(mid.image_id, 100)
    q.used(new.image_id, 200)
    assert q.select([old_in_use, mid, new], now=1000) == [mid.image_id]


def test_a_just_loaded_image_is_not_evicted_for_the_bounds() -> None:
    p = ImagePolicy(ImageBounds(grace_s=10_000, max_images=1, min_keep_s=60))
    busy, fresh = img(1, in_use=True), img(2)
    p.used(fresh.image_id, 1000)
    assert p.select([busy, fresh], now=1030) == []  # over the bound, but its container is about to be made
    assert p.select([busy, fresh], now=1060) == [fresh.image_id]


def test_images_gone_elsewhere_are_forgotten() -> None:
    p = ImagePolicy()
    p.select([img(1), img(2)], now=0)
    p.select([img(2)], now=1)
    assert set(p.last_used) == {img(2).image_id}
