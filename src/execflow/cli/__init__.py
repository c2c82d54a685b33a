"""The ``execflow`` command line: the composition root of every process."""
