"""``equity-nps CUSTOMERS``: the portfolio's NPS per segment, as a table or JSON.

Exit codes and error messages are the engine's (2 for invalid input)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from engine.cli import report_error
from engine.io import read_table

from equity_nps import __version__
from equity_nps.nps import MISSING, nps_by_segment, portfolio_nps


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="equity-nps", description="Net Promoter Score of a customers table, per segment"
    )
    parser.add_argument("customers", type=Path, help="customers table (.parquet, .csv, .arrow)")
    parser.add_argument("--by", default="segment", help="segment column (default: segment)")
    parser.add_argument("--missing", choices=MISSING, default="error",
                        help="customers without nps_score: error (default) or passive")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--version", action="version", version=f"equity-nps {__version__}")
    args = parser.parse_args(argv)
    try:
        customers = read_table(args.customers, "customers")
        table = nps_by_segment(customers, args.by, args.missing)
        overall = portfolio_nps(customers, args.missing)
    except Exception as exc:
        return report_error(exc)
    if args.json:
        print(json.dumps({"nps": overall, "customers": customers.height,
                          "segments": table.to_dicts()}, indent=2))
        return 0
    print(f"{'segment':<16} {'customers':>9} {'promoters':>9} {'passives':>9} "
          f"{'detractors':>10} {'NPS':>7}")
    for row in table.iter_rows(named=True):
        print(f"{row['segment'] or '(none)':<16} {row['customers']:>9} {row['promoters']:>9} "
              f"{row['passives']:>9} {row['detractors']:>10} {row['nps']:>7.1f}")
    print(f"{'all':<16} {customers.height:>9} {'':>9} {'':>9} {'':>10} {overall:>7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
