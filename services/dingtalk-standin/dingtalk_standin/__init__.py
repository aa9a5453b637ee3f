"""STAND-IN for DingTalk's custom-robot API (signing, keyword, 20 messages/min, errcodes) with an inbox page.

Not DingTalk: it runs in the offline demo and in the tests, where the real robot API cannot be reached.
"""
