"""`python -m chargebrain` is the `chargebrain` command."""

import sys

from chargebrain.cli import main

sys.exit(main())
