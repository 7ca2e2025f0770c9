import sys

from steepest.cli import main

sys.exit(main())
