"""The main interface. Until the chat UI lands, a terminal prompt that shows the passages each
question retrieves (`make run` builds or updates the index first)."""

from __future__ import annotations

import sys

from rag import RagError, open_index
from rag.cli import hit_json


def main() -> int:
    try:
        index = open_index()
    except RagError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    stats = index.stats()
    print(f"{stats['articles']} articles, {stats['chunks']} passages. Ask a question (Ctrl-D to quit).")
    while True:
        try:
            question = input("> ")
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if not question.strip():
            continue
        try:
            hits = index.search(question)
        except RagError as e:
            print(f"error: {e}")
            continue
        for h in map(hit_json, hits):
            print(f"[{h['rank']}] {h['title']} ({h['start']}-{h['end']})\n    {' '.join(h['text'].split())[:300]}")


if __name__ == "__main__":
    sys.exit(main())
