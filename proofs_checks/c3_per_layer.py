"""Check claim C3 of docs/claims.md and write its report (see altheory/claims/c3_per_layer.py).

Usage: python proofs_checks/c3_per_layer.py [--thorough] [--seed S] [--json PATH]
"""

from altheory.claims.report import script_main

if __name__ == "__main__":
    raise SystemExit(script_main("C3"))
