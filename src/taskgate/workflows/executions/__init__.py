"""Executions: starting a workflow (manual, event, webhook, schedule, replay), reading,
cancelling and replaying its runs."""
