"""Infrastructure ports (bus, state store, database) with in-memory and real backends."""
