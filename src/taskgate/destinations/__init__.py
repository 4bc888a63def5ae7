"""Outbound destinations and subscriptions: events delivered to webhooks and chat services.

The API manages destinations (secrets sealed, never returned) and subscriptions; the
dispatcher turns committed events into deliveries and queue jobs; the `delivery.send` job
sends each one, retries with backoff, logs every attempt and disables a failing destination.
"""
