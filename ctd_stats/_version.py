"""The package version, in a leaf module: ``_serialize`` reads it without importing the package."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "1.0.0"
