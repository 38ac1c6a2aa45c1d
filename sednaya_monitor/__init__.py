"""Composition root: the command line and the wiring that picks adapters from settings."""

__version__ = "0.1.0"
