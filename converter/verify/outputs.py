"""The verifier's outputs: a JSON report, a Markdown summary, JUnit XML for CI, and a scatter plot."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from ..report import markdown_table, shorten

CACHE_STATES = {
    "hit": "from the verify cache (same files, pairs, settings and versions)",
    "miss": "scored now, and kept in the verify cache",
    "off": "scored now (--no-cache)",
    "n/a": "scored now (a server started elsewhere is not cached)",
}


def write_json(report: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def markdown(report: dict) -> str:
    m = report["metrics"]
    verdict = "PASS" if report["verdict"] == "pass" else "FAIL"
    logit = m["max_abs_logit_delta"]
    lines = [f"FINDING: {finding}" for finding in report.get("findings", [])]
    lines += [
        f"## seqcls verify: {verdict}" + (f": {report['failure']}" if report.get("failure") else ""),
        "",
        f"backend {report['backend']} · device {report['device']} · dtype {report['dtype']} · "
        f"atol {report['atol']:.0e} · {len(report['pairs'])} pairs · {report['environment'].get('vllm', '')}".rstrip(
            " ·"
        ),
        "",
    ]
    rows = [
        (name, f"{e['max_abs_delta']:.2e}", f"{e['mean_abs_delta']:.2e}", str(len(e["failed_pairs"])))
        for name, e in m["endpoints"].items()
    ]
    first = "original path vs converted" if report.get("reference") else "scores"
    lines += [markdown_table((first, "max abs Δ", "mean abs Δ", "failed"), rows), ""]
    if reference := report.get("reference"):
        rows = [
            (f"{label} {name}", f"{e['max_abs_delta']:.2e}", f"{e['mean_abs_delta']:.2e}", str(len(e["failed_pairs"])))
            for side, label in (("converted", "converted"), ("original", "original path"))
            for name, e in reference[side].items()
        ]
        lines += [
            f"against the reference (transformers on {reference['device']}, {reference['prompts']}; the verdict is "
            "the converted side's):",
            "",
            markdown_table(("scores", "max abs Δ", "mean abs Δ", "failed"), rows),
            "",
        ]
    prompts = report.get("prompts", {})
    lines.append(f"prompts: original {prompts.get('original', '?')}; converted {prompts.get('converted', '?')}")
    lines.append(f"max abs Δlogit: {'n/a' if logit is None else f'{logit:.2e}'}")
    lines.append(f"original side: {CACHE_STATES.get(report.get('cache', {}).get('original'), 'scored')}")
    tokens = report["token_ids"]
    lines.append(
        f"prompt token ids: {'identical' if not tokens['mismatched_pairs'] else 'DIFFER in pairs '}"
        + ", ".join(map(str, tokens["mismatched_pairs"]))
    )
    if forms := report.get("input_forms"):
        states = []
        for name, f in forms.items():
            bad = f["failed_pairs"] or f["token_mismatches"]
            state = f"DIFFERENT, max abs Δ {f['max_abs_delta']:.2e}" if bad else "same"
            states.append(f"{name} ({f['pairs']} pairs): {state}")
        lines.append(f"input through the score template, against raw pairs: {'; '.join(states)}")
    if tokens["official_mismatched_pairs"]:
        lines.append(f"note: ids differ from the official formatting in pairs {tokens['official_mismatched_pairs']}")
    for r in report["rankings"]:
        tau = "n/a" if r["kendall_tau"] is None else f"{r['kendall_tau']:.3f}"
        lines.append(
            f"ranking {r['query'][:40]!r} ({r['documents']} docs): Kendall τ {tau}, top-1 equal {r['top1_equal']}"
        )
    if len(m["endpoints"]) > 1:
        lines += ["", f"per pair: {next(iter(m['endpoints']))} shown, ok covers every label"]
    with_reference = bool(report.get("reference"))
    lines += ["", markdown_table(
        ("#", "query", "document", *(("reference",) if with_reference else ()), "original path", "converted",
         "abs Δ", "ok"),
        [
            (str(i), shorten(p["query"]), shorten(p["document"]) or "(empty)",
             *((f"{p['reference']:.6f}",) if with_reference else ()), f"{p['original']:.6f}",
             f"{p['converted']:.6f}", f"{p['abs_delta']:.1e}", "yes" if p["ok"] else "NO")
            for i, p in enumerate(report["pairs"])
        ],
    )]  # fmt: skip
    return "\n".join(lines)


def write_junit(report: dict, path: Path) -> None:
    """One test case per pair and judged endpoint (the converted side against the reference where there is one,
    so the XML agrees with the verdict), plus one for the prompt token ids."""
    suite = ET.Element("testsuite", name=f"seqcls.verify.{report['backend']}")
    cases = 0
    failures = 0
    judged = report["reference"]["converted"] if report.get("reference") else report["metrics"]["endpoints"]
    for name, endpoint in judged.items():
        failed = set(endpoint["failed_pairs"])
        for i, pair in enumerate(report["pairs"]):
            classname = f"parity.{name.strip('/').replace('/', '.').replace(' ', '.')}"
            case = ET.SubElement(suite, "testcase", classname=classname, name=f"pair {i}: {pair['query'][:60]}")
            cases += 1
            if i in failed:
                failures += 1
                ET.SubElement(case, "failure", message=f"abs delta {endpoint['deltas'][i]:.3e} > {report['atol']:.0e}")
    case = ET.SubElement(suite, "testcase", classname="parity", name="prompt token ids")
    cases += 1
    if report["token_ids"]["mismatched_pairs"]:
        failures += 1
        ET.SubElement(case, "failure", message=f"pairs {report['token_ids']['mismatched_pairs']}")
    suite.set("tests", str(cases))
    suite.set("failures", str(failures))
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


def write_plot(report: dict, path: Path) -> bool:
    """False when matplotlib is missing: the plot is a convenience, the verdict does not depend on it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    original = [p["original"] for p in report["pairs"]]
    converted = [p["converted"] for p in report["pairs"]]
    colors = ["tab:blue" if p["ok"] else "tab:red" for p in report["pairs"]]
    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    ax.plot([0, 1], [0, 1], color="0.8", lw=1, zorder=0)
    ax.scatter(original, converted, c=colors, s=18)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="original score", ylabel="converted score")
    ax.set_title(
        f"{report['backend']} · {report['dtype']} · max abs Δ {report['metrics']['max_abs_delta']:.1e}", fontsize=10
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return True
