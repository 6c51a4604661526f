"""Is the wheel set complete where it is installed? pip's own `check`, for a --target install.

    python scripts/gpu_complete.py SITE [--json]

Every requirement of every distribution in SITE (markers evaluated here, no extras) must be met by
a distribution this interpreter sees (SITE first, as PYTHONPATH puts it), at a version inside the
requirement's range; or be waived in scripts/gpu_wheels.txt; or, where this interpreter is a
stand-in for the device (the scratch run), be a package the device image lists without a version.
Then the modules the check imports are imported. Exit 0 when nothing is missing, else 1.
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import json
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import InvalidVersion, Version

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parents[1]))  # kame itself travels as this checkout
from gpu_wheels import canonical, read_image, read_plan, script_parser

# What scripts/gpu_check.sh and gpu_probe.py import on the way to their figures.
CHECK_IMPORTS = (
    "torch",
    "moshi.models",
    "moshi.utils.quantize",
    "bitsandbytes",
    "kame_cli.bench.frontend",
    "kame_cli.doctor.memory",
    "kame_cli.session.talk",
    "kame_cli.session.frontend_proc",
    "kame_cli.profiles",
    "kame_cli.audio_io",
)


def installed() -> dict[str, str]:
    """canonical name -> version of every distribution on sys.path; the first found wins, as in import."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        found.setdefault(canonical(dist.metadata["Name"]), dist.version)
    return found


def check(site: Path, imports: tuple[str, ...] = CHECK_IMPORTS) -> dict[str, object]:
    plan, image, have = read_plan(), read_image(), installed()
    rows: list[dict[str, str]] = []
    dists = sorted(metadata.distributions(path=[str(site)]), key=lambda d: canonical(d.metadata["Name"]))
    for dist in dists:
        owner = canonical(dist.metadata["Name"])
        for text in dist.requires or ():
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            name = canonical(req.name)
            here, there = have.get(name), image.get(name)
            if here is not None and _within(here, req):
                state, detail = "met", here
            elif (owner, name) in plan.waivers:
                state, detail = "waived", f"{here or 'absent'}: {plan.waivers[owner, name]}"
            elif here is None and name in image and (there is None or _within(there, req)):
                state, detail = "image", f"not here; the device image has {there or 'it (no version given)'}"
            else:
                state, detail = "MISSING", here or "absent"
            rows.append(
                {"package": f"{owner} {dist.version}", "needs": str(req), "state": state, "detail": detail}
            )
    failed_imports = {}
    for module in imports:
        try:
            importlib.import_module(module)
        except Exception as err:  # any failure to import is what this check exists to report
            failed_imports[module] = f"{type(err).__name__}: {err}".splitlines()[0][:200]
    missing = [r for r in rows if r["state"] == "MISSING"]
    return {
        "site": str(site),
        "distributions": len(dists),
        "requirements": len(rows),
        "counts": {s: sum(r["state"] == s for r in rows) for s in ("met", "waived", "image", "MISSING")},
        "rows": rows,
        "imports_failed": failed_imports,
        "complete": not missing and not failed_imports,
    }


def _within(version: str, req: Requirement) -> bool:
    try:
        return req.specifier.contains(Version(version), prereleases=True)
    except InvalidVersion:
        return False


def main() -> int:
    parser = script_parser(__doc__)
    parser.add_argument("site", type=Path, help="The --target folder the set was installed into.")
    parser.add_argument("--no-imports", action="store_true", help="Check the requirements only.")
    args = parser.parse_args()
    if not args.site.is_dir():
        print(
            f"gpu_complete: no folder {args.site}: install the set there first (docs/gpu.md)", file=sys.stderr
        )
        return 2
    imports = () if args.no_imports else CHECK_IMPORTS
    result = check(args.site, imports)
    log = sys.stderr if args.json else sys.stdout
    for row in result["rows"]:  # type: ignore[attr-defined]
        if row["state"] != "met":
            print(f"  {row['state']:8} {row['package']} needs {row['needs']}: {row['detail']}", file=log)
    for module, error in result["imports_failed"].items():  # type: ignore[attr-defined]
        print(f"  IMPORT   {module}: {error}", file=log)
    counts = result["counts"]
    print(
        f"{'complete' if result['complete'] else 'INCOMPLETE'}: {result['distributions']} distributions, "
        f"{result['requirements']} requirements: {counts['met']} met, {counts['waived']} waived, "  # type: ignore[index]
        f"{counts['image']} in the image's list, {counts['MISSING']} missing; "  # type: ignore[index]
        f"{len(imports) - len(result['imports_failed'])} of {len(imports)} imports",  # type: ignore[arg-type]
        file=log,
    )
    if args.json:
        print(json.dumps(result))
    return 0 if result["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
