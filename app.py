"""The main interface. Until the browser chat UI lands, a terminal chat: each answer cites the
passages it came from (`make run` builds or updates the index first)."""

from __future__ import annotations

import sys

from rag import RagError
from rag.pipeline import Pipeline


def main() -> int:
    try:
        pipeline = Pipeline.open()
    except RagError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    stats = pipeline.index.stats()
    print(f"{stats['articles']} articles, {stats['chunks']} passages, generator "
          f"{pipeline.generator_name}. Ask a question (empty line: new chat, Ctrl-D: quit).")
    history: list[dict] = []
    while True:
        try:
            question = input("> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if not question:
            history = []
            continue
        try:
            answer = pipeline.ask(question, history)
        except RagError as e:
            print(f"error: {e}")
            continue
        print(answer.text)
        for c in answer.citations:
            print(f"  [{c.n}] {c.title or c.doc_id}{' · ' + c.date if c.date else ''}: “{c.quote}”")
        history += [{"role": "user", "content": question},
                    {"role": "assistant", "content": answer.text}]


if __name__ == "__main__":
    sys.exit(main())
