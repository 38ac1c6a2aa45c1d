"""Hand-built embedding spaces for clustering tests: each vector is an event direction plus a language
direction plus a little noise, so what raw and centred cosines say is known in advance."""

from __future__ import annotations

import numpy as np

DIM = 64
EVENTS = 8


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


class Space:
    """``EVENTS`` orthogonal event directions and two language directions ("xx", "yy") of length
    ``lang_scale`` (an event's is 1); ``noise`` is the standard deviation per dimension."""

    def __init__(self, *, seed: int, lang_scale: float, noise: float) -> None:
        rng = np.random.default_rng(seed)
        basis = np.linalg.qr(rng.normal(size=(DIM, DIM)))[0].astype(np.float32)
        self.events = basis[:EVENTS]
        self.langs = {"xx": basis[EVENTS] * lang_scale, "yy": basis[EVENTS + 1] * lang_scale}
        self.noise = noise
        self.rng = rng

    def vector(self, event: int, lang: str) -> np.ndarray:
        noise = self.rng.normal(scale=self.noise, size=DIM).astype(np.float32)
        return unit(self.events[event] + self.langs[lang] + noise)
