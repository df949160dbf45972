"""Turn CPU benchmark: CPU milliseconds per persisted chat turn, in process (`make bench-turn`)."""
