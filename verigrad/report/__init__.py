"""Renderers of a CheckReport: plain data in, text out."""
from __future__ import annotations
