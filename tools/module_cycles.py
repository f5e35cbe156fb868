#!/usr/bin/env python3
"""Fails when the modules of a crate import each other in a circle.

usage: tools/module_cycles.py [CRATE_SRC_DIR ...]   (default: every crates/*/src and tests/)

Two readings of the `crate::` and `super::` paths in the source (a reading of the text, not of
the compiler; comments and a file's own `#[cfg(test)] mod tests` are skipped):

- files: module A (a file) uses something of module B and B, directly or not, of A;
- folders: the top-level modules of the crate (`http`, `api`, `app`, ... in visitor-http), each
  taken as a whole, so that the tree reads one way: a folder may use the folders below it on a
  request's path, never one that uses it.

A module's use of its own parent (or of the crate root) is not an edge: the root only declares
and re-exports. Prints each cycle and exits 1 when there is one; prints a summary and exits 0
otherwise. `make lint` runs it.
"""
import os
import re
import sys

PATH = re.compile(r"\b(crate|super)::((?:[a-z_][a-z0-9_]*::)*[A-Za-z_][A-Za-z0-9_]*)")
GROUP = re.compile(r"\b(crate|super)::\{([^;]*?)\}\s*;", re.S)
COMMENT = re.compile(r"//[^\n]*")
OWN_TESTS = re.compile(r"#\[cfg\(test\)\]\s*mod\s+tests\s*\{")


def module_files(src):
    """Module path (a tuple of names) -> file."""
    found = {}
    for root, _, files in os.walk(src):
        for name in files:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(root, name)
            parts = tuple(os.path.relpath(path, src)[:-3].split(os.sep))
            if parts[-1] in ("lib", "main", "mod"):
                parts = parts[:-1]
            found[parts] = path
    return found


def paths_used(text, module):
    """Every module path the text names through `crate::` or `super::`."""
    def base(anchor):
        return () if anchor == "crate" else module[:-1]

    for match in PATH.finditer(text):
        yield base(match.group(1)) + tuple(match.group(2).split("::"))
    for match in GROUP.finditer(text):
        for item in re.split(r",(?![^{]*\})", match.group(2)):
            names = [n.strip("{} \n\t") for n in item.split("::")]
            names = [n for n in names if n and n != "self"]
            if names:
                yield base(match.group(1)) + tuple(names)


def longest_module(path, modules):
    for n in range(len(path), 0, -1):
        if path[:n] in modules:
            return path[:n]
    return None


def edges(src):
    modules = module_files(src)
    graph = {m: set() for m in modules}
    for module, file in modules.items():
        with open(file, encoding="utf-8") as f:
            text = COMMENT.sub("", f.read())
        own_tests = OWN_TESTS.search(text)
        if own_tests:
            text = text[: own_tests.start()]
        for path in paths_used(text, module):
            target = longest_module(path, modules)
            if target is None or target == module or module[: len(target)] == target:
                continue
            graph[module].add(target)
    return graph


def cycles(graph):
    """The strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def folders(graph):
    """The same graph between the crate's top-level modules."""
    top = {}
    for module, targets in graph.items():
        if not module:
            continue
        top.setdefault(module[:1], set())
        for target in targets:
            if target and target[:1] != module[:1]:
                top[module[:1]].add(target[:1])
    for targets in list(top.values()):
        for target in targets:
            top.setdefault(target, set())
    return top


def name(module):
    return "::".join(module) or "crate"


def main(args):
    sources = args or sorted(
        os.path.join("crates", c, "src") for c in os.listdir("crates")
        if os.path.isdir(os.path.join("crates", c, "src"))
    )
    failed = False
    for src in sources:
        graph = edges(src)
        for level, g in (("modules", graph), ("folders", folders(graph))):
            for cycle in cycles(g):
                failed = True
                print(f"{src}: import cycle between {level}: " + " <-> ".join(map(name, cycle)))
    if not failed:
        print(f"module-cycles: no import cycle in {', '.join(sources)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
