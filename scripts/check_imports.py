#!/usr/bin/env python3
"""Checks that every target imports only the modules it declares in Package.swift.

SwiftPM on Linux lets a target import any module it reaches through its dependencies, so a
layer can quietly reach past the one above it. This compares each target's `import` lines with
its declared dependencies (`swift package describe --type json`): a module of this package, or
of a dependency's product, that a target imports without declaring it is an error. Modules of
the toolchain and the system (Foundation, Glibc, Testing, ...) need no declaration. The other
way round too: a Swift target that declares a dependency none of its files imports is an error,
so Package.swift's layer map says what the code really uses (C targets, which link rather than
import, are not checked that way).
"""
import json
import re
import subprocess
import sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
described = subprocess.run(
    ["swift", "package", "describe", "--type", "json"],
    cwd=root, check=True, capture_output=True, text=True).stdout
package = json.loads(described)
targets = {t["name"]: t for t in package["targets"]}
# Modules a target may only import by declaring them: this package's targets and the modules
# of the products it depends on (a product's module has the product's name here).
products = {p for t in targets.values() for p in t.get("product_dependencies") or []}
guarded = set(targets) | products

import_line = re.compile(
    r"^\s*(?:@testable\s+|@_exported\s+|@_spi\([^)]*\)\s+)*import\s+"
    r"(?:(?:class|struct|enum|protocol|func|var|let|typealias)\s+)?([A-Za-z_][A-Za-z0-9_]*)",
    re.MULTILINE)
problems = []
for name, target in sorted(targets.items()):
    declared = set(target.get("target_dependencies") or []) | set(
        target.get("product_dependencies") or [])
    imported = set()
    swift_sources = [s for s in target.get("sources") or [] if s.endswith(".swift")]
    for source in swift_sources:
        path = root / target["path"] / source
        modules = set(import_line.findall(path.read_text()))
        imported |= modules
        for module in sorted(modules):
            if module in guarded and module != name and module not in declared:
                problems.append(f"{path.relative_to(root)}: imports {module}, which target "
                                f"{name} does not declare")
    if swift_sources:
        for module in sorted(declared - imported):
            problems.append(f"Package.swift: target {name} declares {module}, which none of "
                            f"its files imports")
if problems:
    print("check_imports: imports and declared dependencies disagree (declare what is "
          "imported, drop what is not):")
    print("\n".join("  " + p for p in problems))
    sys.exit(1)
print(f"check_imports: {len(targets)} targets import exactly what they declare")
