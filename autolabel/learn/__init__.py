"""Learning from reviews: examples read and fitted, and the planner that picks what to review."""
