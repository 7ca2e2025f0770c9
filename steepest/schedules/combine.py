"""Combinators: run schedules one after another, switching at step boundaries or at fractions of
training. Each part counts its own steps from 0, so `warmup` then `cosine` reads as a sentence."""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from steepest.schedules.base import build_schedule, resolve_steps


@dataclass(frozen=True)
class Join:
    """`schedules[i]` runs from `boundaries[i-1]` (as its own step 0) up to `boundaries[i]`:

        m(t) = m_i(t - b_{i-1})   for b_{i-1} <= t < b_i     (b_0 = 0)

    Continuity at a boundary is up to the parts (a warmup that ends at 1 joined to a decay that
    starts at 1 is continuous; tests check the shipped combinations).

    >>> from steepest.schedules.decay import Exponential, Warmup
    >>> s = Join((Warmup(10, warmup_fraction=1.0, start_ratio=0.0), Exponential(0.9)), (10,))
    >>> s(5), s(10), round(s(11), 6)
    (0.5, 1.0, 0.9)
    """

    schedules: tuple[Callable[[int], float], ...]
    boundaries: tuple[int, ...]

    def __post_init__(self):
        object.__setattr__(self, "schedules", tuple(self.schedules))
        object.__setattr__(self, "boundaries", tuple(int(b) for b in self.boundaries))
        if len(self.boundaries) != len(self.schedules) - 1:
            raise ValueError("join needs one boundary fewer than schedules")
        if list(self.boundaries) != sorted(self.boundaries) or any(b < 0 for b in self.boundaries):
            raise ValueError(f"boundaries must be non-negative and increasing, got {list(self.boundaries)}")

    def __call__(self, step: int) -> float:
        i = bisect.bisect_right(self.boundaries, step)
        start = self.boundaries[i - 1] if i else 0
        return self.schedules[i](step - start)


def by_fraction(total_steps: int, parts: list[tuple[float, Callable[[int], float]]]) -> Join:
    """Join schedules that each take a fraction of `total_steps`; the fractions add up to 1.

    >>> from steepest.schedules.basic import Cosine
    >>> from steepest.schedules.decay import Warmup
    >>> s = by_fraction(100, [(0.1, Warmup(10, warmup_fraction=1.0)), (0.9, Cosine(90))])
    >>> s.boundaries, s(10), s(100)
    ((10,), 1.0, 0.0)
    """
    fractions = [f for f, _ in parts]
    if any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"fractions must be >= 0 and add up to 1, got {fractions}")
    bounds, acc = [], 0.0
    for f in fractions[:-1]:
        acc += f
        bounds.append(round(acc * total_steps))
    return Join(tuple(s for _, s in parts), tuple(bounds))


def join(total_steps: int, parts: list[dict[str, Any]], boundaries: list[float]) -> Join:
    """Schedules one after another: recipe form of `Join`.

    `{name: join, parts: [{name: warmup, warmup_fraction: 1.0}, {name: cosine}], boundaries: [0.1]}`.
    Boundaries in (0, 1) are fractions of training, whole numbers are steps. Each part is built
    with its own span as total_steps, so its fractions are fractions of that span.

    >>> s = join(100, [{"name": "warmup", "warmup_fraction": 1.0}, {"name": "cosine"}], [0.1])
    >>> s(0), s(10), s(100)
    (0.05, 1.0, 0.0)
    """
    steps = list(resolve_steps(list(boundaries), total_steps, "boundaries"))
    if len(steps) != len(parts) - 1:
        raise ValueError(f"join needs one boundary fewer than parts: {len(parts)} parts, {len(steps)} boundaries")
    if steps and steps[-1] > total_steps:
        raise ValueError(f"the last boundary ({steps[-1]}) is past the end of training ({total_steps} steps)")
    edges = [0, *steps, total_steps]
    built = []
    for i, part in enumerate(parts):
        part = dict(part)
        if "name" not in part:
            raise ValueError(f"parts[{i}] needs a 'name'")
        name = part.pop("name")
        built.append(build_schedule(name, max(1, edges[i + 1] - edges[i]), **part))
    return Join(tuple(built), tuple(steps))
