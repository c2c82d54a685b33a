"""``python -m execflow``: the same command line as the ``execflow`` script."""

from execflow.cli.app import main

if __name__ == "__main__":
    main()
