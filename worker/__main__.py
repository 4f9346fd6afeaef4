"""`python -m worker`: what the RunPod image runs."""

import sys

from stillhouse.errors import SettingsError
from worker.main import main

try:
    main()
except SettingsError as exc:
    for problem in exc.problems:
        print(f"worker: bad setting: {problem}", file=sys.stderr)
    sys.exit(2)
