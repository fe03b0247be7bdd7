"""The LVIS v1 vocabulary (1203 classes) and the released object list, shipped in manifests/."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

MANIFESTS_DIR = Path(__file__).resolve().parent.parent / "manifests"
LVIS_CATEGORIES_FILE = MANIFESTS_DIR / "lvis_v1_categories.json"
RELEASED_OBJECTS_FILE = MANIFESTS_DIR / "pin_object_instances.txt"
FREQUENCIES = ("f", "c", "r")


@dataclass(frozen=True)
class LvisClass:
    id: int
    name: str
    synonyms: tuple[str, ...]
    synset: str
    frequency: str
    definition: str

    @property
    def prompt_name(self) -> str:
        """The name as it goes into a text prompt: underscores become spaces."""
        return self.name.replace("_", " ")


class Vocabulary:
    """Look-ups over the LVIS classes by id and by exact folder name."""

    def __init__(self, classes: list[LvisClass]):
        self.classes = sorted(classes, key=lambda c: c.id)
        self._by_id = {c.id: c for c in self.classes}
        self._by_name = {c.name: c for c in self.classes}

    def __len__(self) -> int:
        return len(self.classes)

    def __iter__(self):
        return iter(self.classes)

    def by_id(self, class_id: int) -> LvisClass:
        return self._by_id[class_id]

    def by_name(self, name: str) -> LvisClass | None:
        return self._by_name.get(name)

    def search(self, query: str = "", frequency: str | None = None) -> list[LvisClass]:
        """Classes whose name, synonyms or definition contain `query` (case-insensitive)."""
        query = query.lower().replace(" ", "_")
        found = []
        for c in self.classes:
            if frequency and c.frequency != frequency:
                continue
            haystack = [c.name, *c.synonyms]
            if not query or any(query in s.lower() for s in haystack):
                found.append(c)
        return found


@functools.lru_cache(maxsize=4)
def load_vocabulary(path: str | Path = LVIS_CATEGORIES_FILE) -> Vocabulary:
    path = Path(path)
    try:
        records = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read the LVIS vocabulary: {error}") from None
    classes = [
        LvisClass(
            id=int(r["id"]),
            name=r["name"],
            synonyms=tuple(r.get("synonyms", ())),
            synset=r.get("synset", ""),
            frequency=r.get("frequency", ""),
            definition=r.get("def", ""),
        )
        for r in records
    ]
    return Vocabulary(classes)


def load_released_objects(path: str | Path = RELEASED_OBJECTS_FILE) -> list[str]:
    """The relative paths `<lvis_name>/<i>.png` of the released 60,687-object set."""
    return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
