"""Model-runner benchmark (`make bench-runner`); see __main__.py."""
