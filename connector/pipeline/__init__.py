"""The ingest driver, delivery, callbacks, DNC-group pushes and decode lanes."""
