"""Schedules: cron, interval and one-off timings that start tasks and workflows."""
