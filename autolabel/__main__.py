"""Entry point for `python -m autolabel`."""

from autolabel.cli import main

if __name__ == "__main__":
    main()
