"""Check claim C2 of docs/claims.md and write its report (see altheory/claims/c2_linear_region.py).

Usage: python proofs_checks/c2_linear_region.py [--thorough] [--seed S] [--json PATH]
"""

from altheory.claims.report import script_main

if __name__ == "__main__":
    raise SystemExit(script_main("C2"))
