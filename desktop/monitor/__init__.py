"""Live memory display."""
