"""The callback registry: recipe `callbacks: [{name: ..., ...}]` entries by name."""

from __future__ import annotations

from steepest.registry import Registry

CALLBACKS = Registry("callback")
