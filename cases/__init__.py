"""Runnable studies, the command line, output writing and plots (the only place with I/O)."""
