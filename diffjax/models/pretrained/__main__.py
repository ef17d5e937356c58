"""``python -m diffjax.models.pretrained convert NETWORK.pkl OUT``: an EDM pickle → ``OUT.npz`` + ``OUT.json``."""

import sys

from . import _main

if __name__ == "__main__":
    _main(sys.argv[1:])
