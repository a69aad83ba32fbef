import sys

from experiments.evaluate import main

sys.exit(main())
