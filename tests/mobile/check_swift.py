"""Checks the generated Swift bindings without a Swift toolchain (there is
none for this machine's Debian): what can be checked here is.

1. SyncCore.swift parses with tree-sitter-swift with no error node. Two
   constructs the grammar does not know are rewritten first, both to
   equivalent Swift: `#if swift(>=5.8) @_documentation(...) #endif` blocks
   (conditional-compilation around an attribute) are dropped, and the
   Void closure `{ () }` becomes `{ }`. A copy with one brace removed must
   fail, so the parse is known to catch errors.
2. The C header SyncCoreFFI.h compiles (gcc -fsyntax-only), and every
   function it declares is exported by the built library (nm).
3. The tablet API is there: the Swift names of the exported calls.

Not checked: Swift type checking and compiling, linking on Apple
platforms, running on iOS.

Usage: check_swift.py SWIFT_DIR LIBRARY  (PYTHONPATH holds tree_sitter)
"""

import re
import subprocess
import sys

import tree_sitter
import tree_sitter_swift

swift_dir, library = sys.argv[1], sys.argv[2]
source = open(f"{swift_dir}/SyncCore.swift", "rb").read()
parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_swift.language()))


def errors(text: bytes):
    found = []

    def walk(node):
        if node.type == "ERROR" or node.is_missing:
            found.append(node)
        for child in node.children:
            walk(child)

    walk(parser.parse(text).root_node)
    return found


normalised = re.sub(
    rb"#if swift\(>=5\.8\)\n\s*@_documentation\(visibility: private\)\n#endif\n", b"", source)
normalised = re.sub(rb"= \{ \(\) \}\n", b"= { }\n", normalised)
found = errors(normalised)
for node in found[:10]:
    line = node.start_point[0] + 1
    print(f"SyncCore.swift:{line}: {normalised[node.start_byte:node.start_byte + 80]!r}")
assert not found, f"{len(found)} parse errors in SyncCore.swift"

middle = normalised.index(b"}", len(normalised) // 2)
broken = normalised[:middle] + normalised[middle + 1:]
assert errors(broken), "the parser did not notice a missing brace"
print(f"SyncCore.swift: {len(source)} bytes parse cleanly (and a broken copy does not)", flush=True)

header = f"{swift_dir}/SyncCoreFFI.h"
# gcc has no nullability qualifiers (a clang extension): they are defined away.
subprocess.run(["gcc", "-fsyntax-only", "-Wall", "-Werror", "-D_Nonnull=", "-D_Nullable=",
                "-I", swift_dir, "-x", "c", "-"],
               input='#include "SyncCoreFFI.h"\n', text=True, check=True)
declared = set(re.findall(r"\b(uniffi_mobile_bindings_\w+|ffi_mobile_bindings_\w+)\s*\(",
                          open(header).read()))
exported = set(subprocess.run(["nm", "-D", "--defined-only", library], check=True,
                              capture_output=True, text=True).stdout.split())
exported = {word for word in exported if word.startswith(("uniffi_", "ffi_"))}
missing = sorted(declared - exported)
assert declared and not missing, f"declared in the header, not in the library: {missing[:10]}"
print(f"SyncCoreFFI.h compiles; its {len(declared)} functions are all in {library}")

text = source.decode()
for name in ["func openTablet(", "func signIn(", "func submitTotp(", "func submitRecoveryCode(",
             "func listEvents(", "func chooseEvent(", "func checkIn(", "func search(",
             "func annul(", "func counts(", "func duplicates(", "func syncStatus(",
             "func setListener(", "func settings(", "func setSetting(", "func kioskLock(",
             "func kioskUnlock(", "func signOut(", "func wipeLocalData(",
             "protocol TabletListener", "protocol SecureStore", "enum TabletError"]:
    assert name in text, f"{name} is not in SyncCore.swift"
print("the tablet API is in SyncCore.swift")
