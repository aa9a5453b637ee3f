"""Developer tools, never shipped in an image.

`make dev` (devstack), `make load` (loadgen), the SMTP sink (mailsink), the fleet rig, `make lock`, `make mutation`.
"""
