"""The OpenAI-compatible API (`/v1`): a thin router, protocol models, and the serving logic."""
