"""`python -m threadline.cli ...`: the same as `threadline ...`."""

from . import main

main()
