"""Live memory samples of this machine and their recent history."""
