"""Check that the fast-path tests can fail: plant one bug at a time in a copy of
``_fast.pyx`` or one of its ``_fast_*.pxi`` includes, rebuild, and run
``tests/test_fast.py`` and ``tests/test_differential.py``.
Every mutant must be caught (one listed is equivalent and expected to survive).

    python3 tests/sanitize/mutants.py              # all mutants, a few minutes
    python3 tests/sanitize/mutants.py "dup crc"    # some of them

The copy lives in a temporary directory; the development tree is not touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

#: (name, original text, planted bug). Each original text occurs once in the sources.
MUTANTS = [
    ("zero run of one", "    if best_len < 2:\n        # No run",
     "    if best_len < 1:\n        # No run"),
    ("mapped ::fffe:", "(best_len == 5 and words[5] == 0xFFFF)",
     "(best_len == 5 and words[5] == 0xFFFE)"),
    ("port 65536", "        if value > 0xFFFF:\n            return -1\n    port[0]",
     "        if value > 0x10000:\n            return -1\n    port[0]"),
    ("surrogates", "                high = 0x9F", "                high = 0xA0"),
    ("overlong 3-byte", "                low = 0xA0", "                low = 0x9F"),
    ("ssl ascii 0x27", "0x23 <= sub_type <= 0x27", "0x23 <= sub_type <= 0x26"),
    ("dup crc", "            if crc_pos >= 0:\n                return None  # more",
     "            if crc_pos >= 99999:\n                return None  # more"),
    ("octet 256", "                    if octet > 255:", "                    if octet > 256:"),
    ("v1 108 bytes", "    _V1_MAX = 107", "    _V1_MAX = 108"),
    ("ipv6 8 groups", "    if count > 7:\n        return False\n    memset(out, 0, 16)",
     "    if count > 8:\n        return False\n    memset(out, 0, 16)"),
    ("trailing colon", "        elif i == n:\n            return False  # a trailing single ':'",
     "        elif i == n:\n            pass"),
    ("needed + 1", "return _refuse(verdict, _INCOMPLETE, total - size)",
     "return _refuse(verdict, _INCOMPLETE, total - size + 1)"),
    ("mapped byte", "    a[11] = 0xFF\n", "    a[11] = 0xFE\n"),
    ("unix strip", "        while n > 0 and raw[n - 1] == 0:",
     "        while n > 1 and raw[n - 1] == 0:"),
    ("leak", "    cdef object pair = PyTuple_New(2)\n",
     "    cdef object pair = PyTuple_New(2)\n    Py_INCREF(pair)\n"),
    ("crc tail", "    while n > 0:\n        crc = _crc_table[0]",
     "    while n > 1:\n        crc = _crc_table[0]"),
    ("UNKNOWNX", "(p[13] == 0x20 or p[13] == 0x0D)",
     "(p[13] == 0x20 or p[13] == 0x0D or p[13] == 0x58)"),
    ("netns", "    if tlv_type == _TYPE_NETNS:  # US-ASCII (R-58)\n        return _is_ascii(v, n)",
     "    if tlv_type == _TYPE_NETNS:  # US-ASCII (R-58)\n        return True"),
    ("encode crc tlv", "tlv_type > 0xFF or tlv_type == 0x03 or", "tlv_type > 0xFF or"),
    ("uppercase hex", 'cdef const char *_HEX = b"0123456789abcdef"',
     'cdef const char *_HEX = b"0123456789ABCDEF"'),
    ("equivalent: LOCAL tlvs", "        if length >= block:\n            tlvs = _parse_tlvs",
     "        if length > block:\n            tlvs = _parse_tlvs"),
]


def main(argv: list[str]) -> int:
    chosen = [m for m in MUTANTS if not argv or m[0] in argv]
    survivors = []
    with tempfile.TemporaryDirectory(prefix="proxyproto-mutants.") as work:
        for name in ("src", "tests", "setup.py", "pyproject.toml"):
            source = os.path.join(ROOT, name)
            if os.path.isdir(source):
                shutil.copytree(source, os.path.join(work, name),
                                ignore=shutil.ignore_patterns("*.so", "_fast.c", "__pycache__"))
            else:
                shutil.copy(source, work)
        package = os.path.join(work, "src", "proxyproto")
        sources = {}
        for name in sorted(os.listdir(package)):
            if name == "_fast.pyx" or (name.startswith("_fast_") and name.endswith(".pxi")):
                with open(os.path.join(package, name)) as file:
                    sources[os.path.join(package, name)] = file.read()
        env = {**os.environ, "PYTHONPATH": os.path.join(work, "src"),
               "PROXYPROTO_DIFF_EXAMPLES": "150"}
        env.pop("PROXYPROTO_NO_EXTENSIONS", None)
        for name, before, after in chosen:
            found = [path for path, text in sources.items() if text.count(before) == 1]
            if len(found) != 1 or sum(text.count(before) for text in sources.values()) != 1:
                print(f"{name}: the original text is not found once; update MUTANTS")
                return 2
            for path, text in sources.items():  # every file as it was, but the one mutant
                with open(path, "w") as file:
                    file.write(text.replace(before, after) if path == found[0] else text)
            subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
                           cwd=work, check=True, capture_output=True)
            run = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                 "-W", "ignore::DeprecationWarning", "tests/test_fast.py",
                 "tests/test_differential.py"],
                cwd=work, env=env, capture_output=True, text=True,
            )
            caught = run.returncode != 0
            if not caught and not name.startswith("equivalent"):
                survivors.append(name)
            print(f"{'caught  ' if caught else 'SURVIVED'}  {name}", flush=True)
    print(f"{len(chosen) - len(survivors)} of {len(chosen)} as expected")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
