"""Build-and-test automation for Tasker Core."""

__version__ = "0.1.0"
