"""Built-in student search spaces."""
