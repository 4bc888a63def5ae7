"""Operations endpoints: liveness, readiness, metrics, capabilities."""
