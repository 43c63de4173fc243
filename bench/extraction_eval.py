"""Extraction on a corpus of real pages: the score against hand-checked truth, and the
extractor's CPU per page, optionally side by side with another git ref of telex.

    make eval CORPUS=/path/to/corpus            # or:
    .venv/bin/python bench/extraction_eval.py --corpus PATH [--scorer PATH] [--baseline REF]

The corpus is a folder with ``truth.json`` (one object per file, ``file`` relative to it).
The scorer is run as ``SCORER --explain`` with ``CORPUS_DIR`` set; by default the
``tools/score-extraction`` next to the corpus folder, when there is one. ``--baseline main``
measures that ref's extractor in a temporary git worktree, in the same run, on the same
files, for the CPU comparison recorded in bench/RESULTS.md. Nothing here is product code.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Runs in the interpreter under test (this tree's or a baseline worktree's): warm CPU per page.
MEASURE = r"""
import json, sys, time
from datetime import UTC, datetime
from telex.poller.documents import extract_document
from telex.poller.extract import ExtractError
files, repeats = json.loads(sys.argv[1]), int(sys.argv[2])
now = datetime(2026, 6, 1, tzinfo=UTC)
out = {}
for path in files:
    body = open(path, "rb").read()
    def once():
        try:
            return len(extract_document(body, "file://" + path, now=now).entries)
        except ExtractError:
            return 0
    once()  # warm: imports, caches, the date library's languages
    started = time.process_time()
    for _ in range(repeats):
        n = once()
    out[path] = {"cpu_ms": (time.process_time() - started) / repeats * 1000, "entries": n}
print(json.dumps(out))
"""


def measure(python: str, services: Path, files: list[str], repeats: int) -> dict[str, dict]:
    env = {**os.environ, "PYTHONPATH": str(services)}
    done = subprocess.run(
        [python, "-c", MEASURE, json.dumps(files), str(repeats)],
        capture_output=True,
        env=env,
        check=True,
        timeout=1800,
    )
    return json.loads(done.stdout)


def baseline_tree(ref: str, into: Path) -> Path:
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(into), ref],
        check=True,
        capture_output=True,
    )
    return into


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", required=True, help="folder holding truth.json")
    parser.add_argument("--scorer", help="scoring command (default: ../tools/score-extraction)")
    parser.add_argument("--baseline", metavar="REF", help="git ref to compare CPU with")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    corpus = Path(args.corpus).resolve()
    truth = json.loads((corpus / "truth.json").read_text(encoding="utf-8"))
    files = [str(corpus / t["file"]) for t in truth if (corpus / t["file"]).is_file()]

    scorer = Path(args.scorer) if args.scorer else corpus.parent / "tools" / "score-extraction"
    if scorer.is_file():
        print(f"## score ({scorer.name}, CORPUS_DIR={corpus})\n", flush=True)
        env = {**os.environ, "CORPUS_DIR": str(corpus)}
        subprocess.run([str(scorer), "--explain"], cwd=REPO, env=env, check=False)
    else:
        print(f"no scorer at {scorer}: CPU only")

    python = sys.executable
    mine = measure(python, REPO / "services", files, args.repeats)
    base: dict[str, dict] = {}
    if args.baseline:
        with tempfile.TemporaryDirectory() as tmp:
            tree = baseline_tree(args.baseline, Path(tmp) / "baseline")
            try:
                base = measure(python, tree / "services", files, args.repeats)
            finally:
                subprocess.run(
                    ["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
                    check=False,
                    capture_output=True,
                )
    print(f"\n## CPU per page (warm, mean of {args.repeats}, process time)\n")
    head = "| file | bytes | entries | CPU ms |"
    if base:
        ref = args.baseline
        head = f"| file | bytes | {ref} entries | {ref} CPU ms | entries | CPU ms |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    total_mine = total_base = 0.0
    for path in files:
        name = str(Path(path).relative_to(corpus))
        size = os.path.getsize(path)
        m = mine[path]
        total_mine += m["cpu_ms"]
        if base:
            b = base[path]
            total_base += b["cpu_ms"]
            print(
                f"| `{name}` | {size} | {b['entries']} | {b['cpu_ms']:.1f} | {m['entries']} "
                f"| {m['cpu_ms']:.1f} |"
            )
        else:
            print(f"| `{name}` | {size} | {m['entries']} | {m['cpu_ms']:.1f} |")
    n = len(files)
    if base:
        print(
            f"\nmean CPU per page: {args.baseline} {total_base / n:.1f} ms, this tree "
            f"{total_mine / n:.1f} ms ({total_mine / total_base:.2f}x)"
        )
    else:
        print(f"\nmean CPU per page: {total_mine / n:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
