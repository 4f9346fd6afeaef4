"""`python -m tests.doubles.comfy --port P [switches]`."""

from tests.doubles.comfy.server import main

main()
