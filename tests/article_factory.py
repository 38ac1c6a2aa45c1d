"""Generated import lines for volume tests: distinct, deterministic, topic-free filler news."""

from __future__ import annotations

import json
import random
from pathlib import Path

_SUBJECTS = [
    "council",
    "harbour",
    "museum",
    "railway",
    "orchestra",
    "library",
    "market",
    "bridge",
    "school",
    "hospital",
    "stadium",
    "airport",
    "river",
    "festival",
    "factory",
    "vineyard",
    "observatory",
    "ferry",
]
_VERBS = ["opens", "closes", "expands", "renovates", "celebrates", "postpones", "announces", "reviews", "funds"]
_WORDS = [
    "local",
    "residents",
    "gathered",
    "morning",
    "officials",
    "plan",
    "budget",
    "new",
    "season",
    "weather",
    "delay",
    "visitors",
    "record",
    "year",
    "report",
    "committee",
    "vote",
    "approved",
    "project",
    "workers",
    "repairs",
    "schedule",
    "tickets",
    "crowd",
    "volunteers",
    "historic",
    "summer",
    "winter",
    "spring",
    "autumn",
    "city",
    "town",
    "district",
    "north",
    "south",
    "east",
    "west",
    "centre",
    "mayor",
]


def generated_lines(n: int, *, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        subject, verb = rng.choice(_SUBJECTS), rng.choice(_VERBS)
        words = " ".join(rng.choice(_WORDS) for _ in range(40))
        lines.append(
            json.dumps(
                {
                    "url": f"https://generated.example/{subject}/{i}",
                    "source": f"gen-{i % 13}",
                    "lang": "en",
                    "published": f"2021-{1 + i % 12:02d}-{1 + i % 28:02d}T12:00:00Z",
                    "title": f"Item {i}: {subject} {verb} {rng.choice(_WORDS)}",
                    "text": f"Report number {i}. The {subject} {verb} after {words}.",
                }
            )
        )
    return lines


def write_generated(path: Path, n: int, *, seed: int = 7) -> Path:
    path.write_text("\n".join(generated_lines(n, seed=seed)) + "\n", encoding="utf-8")
    return path
