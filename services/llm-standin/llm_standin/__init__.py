"""STAND-IN for an OpenAI-compatible chat-completions server: scripted replies streamed token by token.

Not an LLM: it runs in the offline demo and in the tests, where no real model server is reachable.
"""
