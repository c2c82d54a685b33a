"""Applications over the pipeline and the LP twin: the demo, the benchmark, the standalone
simulator run, and the scenario driver they share (the CLI's ``demo``, ``bench`` and
``simulate`` commands call them)."""
