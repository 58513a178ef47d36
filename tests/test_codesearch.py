"""Searching a source tree for flag keys: whole words, skipped directories and files, a large tree."""

from __future__ import annotations

import time
from pathlib import Path

from flagops.lint.codesearch import MAX_FILE_BYTES, search, walk


def write(root: Path, relative: str, content: str | bytes) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def found(root: Path, keys: list[str], exclude: list[Path] | None = None) -> set[str]:
    return set(search(keys, walk([root], exclude or [])).found)


def test_keys_match_as_whole_words_only(tmp_path: Path) -> None:
    write(tmp_path, "app.py", 'if flags.on("lead_scoring_v2") and x.sms_campaignsX: pass\n')
    write(tmp_path, "web/page.tsx", "useFlag('dark_mode'); const new_checkoutFlag = 1; // beta_search\n")
    write(tmp_path, "conf.yml", "features: [call_recording,knowledge_base]\nx: AI_VOICE_CLONING\n")
    keys = [
        "lead_scoring",
        "lead_scoring_v2",
        "sms_campaigns",
        "dark_mode",
        "new_checkout",
        "beta_search",
        "call_recording",
        "knowledge_base",
        "ai_voice_cloning",
    ]
    assert found(tmp_path, keys) == {
        "lead_scoring_v2",
        "dark_mode",
        "beta_search",
        "call_recording",
        "knowledge_base",
    }


def test_keys_at_the_edges_of_a_file_and_of_a_line(tmp_path: Path) -> None:
    write(tmp_path, "a.txt", "first_key")
    write(tmp_path, "b.txt", "x\nsecond_key\r\n-third_key-")
    assert found(tmp_path, ["first_key", "second_key", "third_key", "fourth_key"]) == {
        "first_key",
        "second_key",
        "third_key",
    }


def test_keys_with_dashes_and_dots_match_as_whole_keys(tmp_path: Path) -> None:
    write(tmp_path, "app.ts", 'useFlag("new-dashboard"); flags["checkout.v2"]; f.BetaReports;\n')
    write(tmp_path, "b.py", "on('search.v3.1', 'old-ui-v2')  # beta-reports-ng, export.csv.\n")
    keys = ["new-dashboard", "checkout.v2", "BetaReports", "export.csv"]
    keys += ["old-ui", "search.v3", "beta-reports"]  # parts of longer keys
    assert found(tmp_path, keys) == {"new-dashboard", "checkout.v2", "BetaReports", "export.csv"}
    # `checkout` is a whole word in `flags["checkout.v2"]` as in `flags.checkout`: counted, as before.
    assert found(tmp_path, ["checkout"]) == {"checkout"}


def test_skips_vcs_dependencies_and_virtual_environments(tmp_path: Path) -> None:
    write(tmp_path, "src/app.py", "on('visible')\n")
    write(tmp_path, ".git/config", "in_git\n")
    write(tmp_path, "src/node_modules/pkg/index.js", "in_node_modules\n")
    write(tmp_path, ".venv/lib/site.py", "in_dot_venv\n")
    write(tmp_path, "venv/lib/site.py", "in_venv\n")
    write(tmp_path, "envs/py311/pyvenv.cfg", "home = /usr/bin\n")
    write(tmp_path, "envs/py311/lib/site.py", "in_named_venv\n")
    write(tmp_path, "envs/py311.txt", "next_to_venv\n")
    keys = ["visible", "in_git", "in_node_modules", "in_dot_venv", "in_venv", "in_named_venv", "next_to_venv"]
    assert found(tmp_path, keys) == {"visible", "next_to_venv"}
    files = {p.relative_to(tmp_path).as_posix() for p in walk([tmp_path])}
    assert files == {"src/app.py", "envs/py311.txt"}


def test_skips_binary_and_huge_files_and_counts_them(tmp_path: Path) -> None:
    write(tmp_path, "logo.png", b"\x89PNG\r\n\x1a\n\x00\x00in_binary")
    write(tmp_path, "notes.md", "in_text\n")
    huge = write(tmp_path, "dump.sql", "in_huge ")
    with huge.open("ab") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)
    result = search(["in_binary", "in_text", "in_huge"], walk([tmp_path]))
    assert result.found == {"in_text"}
    assert (result.files_read, result.files_skipped) == (1, 2)


def test_excluded_directories_and_file_roots(tmp_path: Path) -> None:
    write(tmp_path, "flags/main.yaml", "flags:\n  only_in_config: {name: X}\n")
    write(tmp_path, "src/a.py", "in_src\n")
    write(tmp_path, "lib/b.py", "in_lib\n")
    keys = ["only_in_config", "in_src", "in_lib"]
    assert found(tmp_path, keys) == set(keys)
    assert found(tmp_path, keys, exclude=[tmp_path / "flags"]) == {"in_src", "in_lib"}
    result = search(keys, walk([tmp_path / "lib" / "b.py", tmp_path / "src"]))
    assert result.found == {"in_src", "in_lib"}


def test_stops_reading_once_every_key_is_found(tmp_path: Path) -> None:
    for n in range(20):
        write(tmp_path, f"f{n:02}.py", "wanted\n")
    result = search(["wanted"], walk([tmp_path]))
    assert result.found == {"wanted"}
    assert result.files_read == 1


def test_a_tree_of_ten_thousand_files(tmp_path: Path) -> None:
    """10,000 files of about 2 KB and 500 keys, one file in seven mentioning one (measured, not timed)."""
    keys = [f"feature_{n}_rollout" for n in range(500)]
    filler = "".join(f"    value_{n} = compute(config, items[{n}]) if ready else None\n" for n in range(30))
    expected = set()
    for n in range(10_000):
        body = filler
        if n % 7 == 0:
            key = keys[2 * n % 500]  # even-numbered keys only
            body += f'    if client.is_enabled("{key}"):\n'
            expected.add(key)
        body += f"    return feature_{n % 500}_rollout_v2\n"  # never a whole-word match
        write(tmp_path, f"pkg{n // 100:03}/module{n % 100:02}.py", body)
    write(tmp_path, "node_modules/dep/index.js", " ".join(keys))
    started = time.perf_counter()
    result = search(keys, walk([tmp_path]))
    elapsed = time.perf_counter() - started
    print(f"\nsearched {result.files_read} files for {len(keys)} keys in {elapsed:.2f} s")
    assert result.files_read == 10_000
    assert result.found == expected
    assert len(expected) < len(keys)
