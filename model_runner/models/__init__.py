"""Model files the runner knows how to find and prepare (the default model, conversions)."""
