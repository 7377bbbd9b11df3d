"""Shared widgets used by several screens."""
