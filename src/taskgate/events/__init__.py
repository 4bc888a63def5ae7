"""Events: the outbox every state change writes, and the bus that carries them."""
