"""Tasks: the user's unit of work, its state machine, and running it on a worker."""
