"""`make dev` hands its secrets over in 0600 files and prints where they are, never their values."""

from __future__ import annotations

import stat
from pathlib import Path

from devtools.devstack import DevStack


def test_stack_dev_prints_where_the_admin_token_is_not_the_token(tmp_path: Path) -> None:
    stack = DevStack(profile="fast", ports="auto", workdir=tmp_path)
    stack.write_secret_files()
    for path in (stack.admin_token_file, stack.webhook_token_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stack.admin_token_file.read_text().strip() == stack.admin_token
    summary = stack.summary()
    assert stack.admin_token not in summary
    assert f"TALKER_ADMIN_TOKEN_FILE={stack.admin_token_file} make smoke" in summary
    assert stack.webhook_token_file.read_text().strip() not in summary
