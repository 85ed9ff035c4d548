"""Check claim C6 of docs/claims.md and write its report (see altheory/claims/c6_shared_support.py).

Usage: python proofs_checks/c6_shared_support.py [--thorough] [--seed S] [--json PATH]
"""

from altheory.claims.report import script_main

if __name__ == "__main__":
    raise SystemExit(script_main("C6"))
