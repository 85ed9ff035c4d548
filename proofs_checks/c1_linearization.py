"""Check claim C1 of docs/claims.md and write its report (see altheory/claims/c1_linearization.py).

Usage: python proofs_checks/c1_linearization.py [--thorough] [--seed S] [--json PATH]
"""

from altheory.claims.report import script_main

if __name__ == "__main__":
    raise SystemExit(script_main("C1"))
