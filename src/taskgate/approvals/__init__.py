"""Human approvals: pending decisions on workflow steps and task tool calls."""
