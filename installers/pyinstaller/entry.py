"""Entry point of the frozen app (every executable of the bundle runs this)."""

import multiprocessing
import sys

from linda_desktop.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()
    sys.exit(main())
