"""What runs with the deployed stack.

config_render (the config-init container), smoke and its alert-path clients (the smoke container), init_env and
compose_check (`make up`), runbook_html (rendered by config_render), procs (polling helpers they share).
"""
