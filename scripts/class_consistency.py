"""Class consistency of img2img variants of the digits, per strength (genaug.generate.consistency).

    python scripts/class_consistency.py --weights genaug-demo/generator/digits-*/model --strengths 0.1,0.3,0.5,0.7,0.9

prints a markdown table: the share of variants that keep their source's label by a LogisticRegression trained on the
real training digits, and the share that are near copies of their source. This is how to pick the strength.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genaug.generate.consistency import class_consistency, format_table  # noqa: E402


def main() -> None:
    """Parse the flags, measure, print the table (and write JSON with --json)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True, help="the fitted model folder (fit-generator's OUT/model)")
    ap.add_argument("--model", default="img2img-ddpm", help="img2img recipe")
    ap.add_argument("--strengths", default="0.1,0.3,0.5,0.7,0.9")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--n", type=int, default=200, help="held-out source digits")
    ap.add_argument("--size", type=int, default=32, help="side of the upscaled digits (the demo's --size)")
    ap.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = ap.parse_args()
    strengths = [float(s) for s in args.strengths.split(",")]
    res = class_consistency(args.weights, strengths, k=args.k, n=args.n, size=args.size, model=args.model)
    print(format_table(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
