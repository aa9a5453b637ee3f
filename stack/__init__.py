"""Tooling that runs the stack: config rendering, the local-process stack, smoke test, load generator."""
