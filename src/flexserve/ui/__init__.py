"""Terminal presentation helpers: progress bars and tables."""
