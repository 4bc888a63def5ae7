"""The worker side of tasks: one attempt, from RUNNING to a final state, in the
sandbox or the agent loop, with its run, jobs, output events and transcript."""
