"""``python -m spikeconverter`` (and ``torchrun -m spikeconverter``): the command line."""

import sys

from spikeconverter.cli import main

if __name__ == "__main__":
    sys.exit(main())
