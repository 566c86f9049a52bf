"""``python -m tvcli``: the command line."""

from tvcli.cli import main

if __name__ == "__main__":
    main()
