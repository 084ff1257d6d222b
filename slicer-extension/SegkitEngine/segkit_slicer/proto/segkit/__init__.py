"""Package `segkit` of the engine contract."""
