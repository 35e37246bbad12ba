"""Pure decisions: no I/O library, nothing outside connector.core (and the exception tree)."""
