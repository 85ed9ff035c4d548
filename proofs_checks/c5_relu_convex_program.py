"""Check claim C5 of docs/claims.md and write its report (see altheory/claims/c5_relu_convex_program.py).

Usage: python proofs_checks/c5_relu_convex_program.py [--thorough] [--seed S] [--json PATH]
"""

from altheory.claims.report import script_main

if __name__ == "__main__":
    raise SystemExit(script_main("C5"))
