"""Building blocks for HTTP that leaves or enters taskgate on a user's behalf.

- `ssrf`: the outbound URL policy, checked when a URL is saved.
- `guarded_http`: an HTTP client that enforces the policy when it connects.
- `secretbox`: AES-GCM encryption of stored secrets, with key ids and rotation; redaction.
- `signing`: Standard Webhooks signatures (outbound and inbound) and plain HMAC-SHA256.
- `adapters`: how an event becomes a request for a webhook or a chat service.
- `event_text`: how an event reads to people in a chat room.

None of these modules touches the database; the delivery jobs and the inbound webhook
endpoint put them together.
"""
