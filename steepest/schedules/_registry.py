"""The schedule registry: recipe name -> frozen dataclass (a pure function step -> multiplier)."""

from __future__ import annotations

from steepest.registry import Registry

SCHEDULES = Registry("schedule")
