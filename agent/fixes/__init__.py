"""Repairs, keyed by the id of the check whose finding they repair."""

from agent.fixes import board, clock, docker, images, runtime  # noqa: F401 - registers the fixes
from agent.fixes.base import FIXES, CannotFix, FixContext, Fixer

__all__ = ["FIXES", "CannotFix", "FixContext", "Fixer"]
