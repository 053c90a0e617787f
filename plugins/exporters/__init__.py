"""Built-in exporter plugins."""
