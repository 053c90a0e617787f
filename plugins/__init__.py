"""Built-in kdforge plugins, one small module per plugin, grouped by kind."""
