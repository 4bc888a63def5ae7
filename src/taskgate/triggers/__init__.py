"""Triggers: events ingested by API or inbound webhook, and the workflows they start."""
