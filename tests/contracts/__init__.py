"""Contract suites: one abstract test class per port, subclassed per adapter (unit: the fake,
integration: the real server)."""
