"""Built-in teacher plugins."""
