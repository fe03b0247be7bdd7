"""Object sampling from a bank: uniform over objects by default, uniform over classes when
balanced. A bank with one apple and nine dogs tells the two apart."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from smile_data.objects.bank import ObjectBank

DRAWS = 4000


@pytest.fixture
def lopsided_bank(tmp_path: Path) -> ObjectBank:
    for name, count in (("apple", 1), ("dog", 9)):
        for index in range(count):
            path = tmp_path / "bank" / name / f"{index}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((6, 5, 4), 200, np.uint8), "RGBA").save(path)
    return ObjectBank(tmp_path / "bank")


def _class_shares(bank: ObjectBank, balanced: bool) -> tuple[dict[str, float], Counter]:
    rng = np.random.default_rng(0)
    picks = [bank.sample(rng, balanced=balanced) for _ in range(DRAWS)]
    names = Counter(bank.entry(i).name for i in picks)
    return {name: count / DRAWS for name, count in names.items()}, Counter(picks)


def test_balanced_sampling_gives_every_class_the_same_share(lopsided_bank):
    shares, picks = _class_shares(lopsided_bank, balanced=True)
    assert shares["apple"] == pytest.approx(0.5, abs=0.03)
    dogs = [picks[i] for i in range(len(lopsided_bank)) if lopsided_bank.entry(i).name == "dog"]
    assert len(dogs) == 9 and min(dogs) > 0.5 * max(dogs)  # uniform within the class too


def test_plain_sampling_is_uniform_over_objects(lopsided_bank):
    shares, picks = _class_shares(lopsided_bank, balanced=False)
    assert shares["apple"] == pytest.approx(0.1, abs=0.02)
    assert len(picks) == 10 and min(picks.values()) > 0.6 * max(picks.values())
