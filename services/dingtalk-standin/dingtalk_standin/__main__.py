"""`python -m dingtalk_standin --port 8070 --robot TOKEN[:SECRET[:KEYWORD]]`: run the stand-in."""

from dingtalk_standin.server import main

main()
