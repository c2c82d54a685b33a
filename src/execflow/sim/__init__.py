"""The LP twin: a seeded price feed, a simulated venue (book, wire formats, the bus and FIX
shells) and its reference data; the applications that drive it live in ``execflow.apps``."""
