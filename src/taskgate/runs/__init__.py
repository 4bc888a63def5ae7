"""Runs (attempts at tasks, and runs clients report), their logs, and the jobs resource."""
