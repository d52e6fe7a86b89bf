"""Lines of Python under src/ (and stages/) at git revisions, by kind: code, docstrings, comments, blank lines,
and per package. Issue 32's size criterion is measured with it:

    python bench/sloc.py f0e7be6 HEAD            # at the issue's filing, and now
    python bench/sloc.py --packages HEAD         # where the lines are

Reads the committed files (`git show REV:path`), so the working tree is not counted.
"""

import argparse
import ast
import io
import subprocess
import tokenize
from collections import Counter

KINDS = ("code", "doc", "comment", "blank")


def line_kinds(text: str) -> list[str]:
    """One kind per line: a docstring (module, class or function), a whole-line comment, a blank, else code."""
    lines = text.splitlines()
    kinds = ["blank" if not line.strip() else "code" for line in lines]
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.COMMENT and lines[tok.start[0] - 1].strip().startswith("#"):
            kinds[tok.start[0] - 1] = "comment"
    for node in ast.walk(ast.parse(text)):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body \
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            for i in range(body[0].lineno - 1, body[0].end_lineno):
                kinds[i] = "doc"
    return kinds


def files(rev: str, roots: list[str]) -> list[str]:
    out = subprocess.run(["git", "ls-tree", "-r", "--name-only", rev, "--", *roots], check=True,
                         capture_output=True, text=True).stdout
    return [p for p in out.splitlines() if p.endswith(".py")]


def count(rev: str, roots: list[str]) -> tuple[Counter, Counter]:
    """(lines by kind, lines by package) of the .py files under `roots` at `rev`."""
    kinds, packages = Counter(), Counter()
    for path in files(rev, roots):
        text = subprocess.run(["git", "show", f"{rev}:{path}"], check=True, capture_output=True, text=True).stdout
        k = line_kinds(text)
        kinds.update(k)
        parts = path.split("/")
        packages["/".join(parts[:3]) if len(parts) > 3 else path] += len(k)
    return kinds, packages


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("revs", nargs="+", help="git revisions (commits, tags, HEAD)")
    ap.add_argument("--roots", nargs="+", default=["src"], help="folders to count (default: src)")
    ap.add_argument("--packages", action="store_true", help="also the lines of each package / top-level module")
    args = ap.parse_args()
    for rev in args.revs:
        if subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], capture_output=True).returncode:
            ap.error(f"{rev!r} is not a commit of this repository: give a hash, tag, branch or HEAD~N")
    print(f"| revision | lines | {' | '.join(KINDS)} |\n|---|---|{'---|' * len(KINDS)}")
    first, per_rev = None, {}
    for rev in args.revs:
        kinds, per_rev[rev] = count(rev, args.roots)
        total = sum(kinds.values())
        first = first or total
        change = f" ({total / first - 1:+.1%})" if total != first else ""
        print(f"| {rev} | {total:,}{change} | {' | '.join(f'{kinds[k]:,}' for k in KINDS)} |")
    if args.packages:
        names = sorted(set().union(*per_rev.values()), key=lambda n: -per_rev[args.revs[-1]][n])
        print(f"\n| package or module | {' | '.join(args.revs)} |\n|---|{'---|' * len(args.revs)}")
        for name in names:
            print(f"| {name} | {' | '.join(f'{per_rev[r][name]:,}' for r in args.revs)} |")


if __name__ == "__main__":
    main()
