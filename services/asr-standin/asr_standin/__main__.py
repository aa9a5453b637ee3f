"""`python -m asr_standin --port 8090 --transcript TEXT [--api-key KEY]`: run the stand-in."""

from asr_standin.server import main

main()
