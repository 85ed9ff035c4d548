"""Check claim C4 of docs/claims.md and write its report (see altheory/claims/c4_two_layer_fixed_support.py).

Usage: python proofs_checks/c4_two_layer_fixed_support.py [--thorough] [--seed S] [--json PATH]
"""

from altheory.claims.report import script_main

if __name__ == "__main__":
    raise SystemExit(script_main("C4"))
