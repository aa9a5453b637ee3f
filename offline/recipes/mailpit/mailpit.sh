#!/bin/sh
# `mailpit readyz` answers the healthcheck; anything else starts the sink on Mailpit's ports.
set -e
cd /opt/mailsink
if [ "$1" = "readyz" ]; then
    exec /opt/venv/bin/python -c 'import urllib.request as u; u.urlopen("http://127.0.0.1:8025/readyz", timeout=3)'
fi
exec /opt/venv/bin/python -m devtools.mailsink --host 0.0.0.0 --smtp-port 1025 --http-port 8025 "$@"
