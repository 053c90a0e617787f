"""Built-in distillation loss plugins."""
