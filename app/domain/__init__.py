"""The domain: typed values of a session and the rules over them, defined once.

Pure (no I/O, nothing of FastAPI, the stores or a model SDK): the agents, both brains, the
migration import and the tests all read the same definitions. Stored JSON is exactly what
these models dump (`stored()`), so earlier data reads back unchanged.
"""
