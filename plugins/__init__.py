"""Built-in strategies, each module a pluggy plugin (imported as ``equity_plugins``)."""
