"""Check claim C9 of docs/claims.md and write its report (see altheory/claims/c9_alternation.py).

Usage: python proofs_checks/c9_alternation.py [--thorough] [--seed S] [--json PATH]
"""

from altheory.claims.report import script_main

if __name__ == "__main__":
    raise SystemExit(script_main("C9"))
