"""Thin routers, one per area: they parse, call a service, and render."""
