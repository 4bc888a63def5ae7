"""The job queue overview (GET /api/v1/queue)."""
