"""python -m pycmlt ... (same as the `pycmlt` command)."""
import sys

from pycmlt.cli import main

sys.exit(main())
