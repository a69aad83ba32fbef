import sys

from experiments.edit import main

sys.exit(main())
