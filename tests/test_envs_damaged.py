"""A damaged environment record (not JSON, or fields of the wrong kind) is
reported by ``envs list`` with the fix, and ``envs prune`` removes it; both
gave a traceback before."""

from __future__ import annotations

import json

from conftest import cli

from trayapp.install.envs import META_NAME


def test_damaged_records_are_listed_with_the_fix_and_pruned(home):
    envs = home.data_dir / "envs"
    for key, text in {"a" * 16: "[1, 2]", "b" * 16: json.dumps({"size_bytes": "lots"}), "c" * 16: "{not json"}.items():
        (envs / key).mkdir(parents=True)
        (envs / f"{key}.meta").mkdir()
        (envs / f"{key}.meta" / META_NAME).write_text(text)

    listed = cli("envs", "list")
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stdout + listed.stderr
    for key in ("a", "b", "c"):
        assert f"environment {key * 16}: its record" in listed.stdout, listed.stdout
    assert "fix: 'sparecycles envs prune' removes it" in listed.stdout, listed.stdout
    as_json = json.loads(cli("envs", "list", "--json", check=True).stdout)
    assert all(e["damaged"] for e in as_json) and len(as_json) == 3, as_json

    pruned = cli("envs", "prune")
    assert pruned.returncode == 0 and "removed 3 environments" in pruned.stdout, pruned.stdout + pruned.stderr
    assert not any(p.is_dir() for p in envs.iterdir()), list(envs.iterdir())
