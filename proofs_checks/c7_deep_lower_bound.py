"""Check claim C7 of docs/claims.md and write its report (see altheory/claims/c7_deep_lower_bound.py).

Usage: python proofs_checks/c7_deep_lower_bound.py [--thorough] [--seed S] [--json PATH]
"""

from altheory.claims.report import script_main

if __name__ == "__main__":
    raise SystemExit(script_main("C7"))
