"""End-to-end pipeline benchmark; the same as ``execflow bench`` (see its --help).

python bench/pipeline_bench.py                       # embedded + distributed
python bench/pipeline_bench.py --no-distributed      # embedded only
"""

from __future__ import annotations

import typer

from execflow.cli.bench import bench_command

if __name__ == "__main__":
    typer.run(bench_command)
