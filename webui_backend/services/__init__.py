"""The backend's logic: no HTTP, no SQL text."""
