"""The LP simulator (price feed, simulated venue), the scenario driver and the demo."""
