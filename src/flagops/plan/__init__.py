"""Planning, free of I/O: the state, the diff and its guards, saved-plan checks and the plan file."""
