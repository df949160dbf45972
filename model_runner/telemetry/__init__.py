"""Logs, request ids and traces, shared by the runner and the backend (which imports this the
way it imports the runner client). Nothing here is built at import time."""
