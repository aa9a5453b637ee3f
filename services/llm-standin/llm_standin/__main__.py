"""`python -m llm_standin --port 8091 [--reply-file F] [--first-token-delay S] [--tokens-per-second N]`."""

from llm_standin.server import main

main()
