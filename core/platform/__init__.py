"""Where things live on this computer, logging, and human-readable units."""
