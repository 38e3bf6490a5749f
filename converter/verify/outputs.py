"""The verifier's outputs: a JSON report, a Markdown summary, JUnit XML for CI, and a scatter plot."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path

from ..media import described
from ..report import markdown_table, shorten

CACHE_STATES = {
    "hit": "from the verify cache (same files, pairs, settings and versions)",
    "miss": "scored now, and kept in the verify cache",
    "off": "scored now (--no-cache)",
    "n/a": "scored now (a server started elsewhere is not cached)",
}


def write_json(report: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2, ensure_ascii=False)
        f.write("\n")


def sidecar(report: Path) -> Path:
    """Where a large report's per-pair rows go: ``verify.json`` -> ``verify.pairs.jsonl``."""
    return report.with_name(f"{report.stem}.pairs.jsonl")


def write_jsonl(rows: Iterable[dict], path: Path) -> Path:
    """One row a line, written as the rows come."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def markdown(report: dict) -> str:
    m = report["metrics"]
    verdict = "PASS" if report["verdict"] == "pass" else "FAIL"
    logit = m["max_abs_logit_delta"]
    lines = [f"FINDING: {finding}" for finding in report.get("findings", [])]
    if original_side := report.get("original_side"):
        lines.append(f"original: {original_side}")
    gate = (report.get("ranking_summary") or {}).get("gate")
    judged = (
        f"{report['gguf_type']} judged on rankings (median τ ≥ {gate['median_tau']}, top-1 agreement ≥ "
        f"{gate['top1_agreement']}, |ΔNDCG@10| ≤ {gate['ndcg_atol']}); |Δ| not gated"
        if gate
        else f"atol {report['atol']:.0e}"
    )
    engine = report["environment"].get("vllm") or report["environment"].get("llama-cpp-python", "")
    lines += [
        f"## seqcls verify: {verdict}" + (f": {report['failure']}" if report.get("failure") else ""),
        "",
        *_ranking_lead(report.get("ranking_summary")),
        f"backend {report['backend']} · device {report['device']} · dtype {report['dtype']} · {judged} · "
        f"{report['pair_count']} pairs · {engine}".rstrip(" ·"),
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
    mismatched = tokens["mismatched_pairs"]
    state = f"DIFFER in pairs {_some(mismatched)}" if mismatched else "identical"
    if not mismatched and tokens.get("official_mismatched_pairs") is None:
        state = "not compared (the backend gives none for these prompts)"
    lines.append(f"prompt token ids: {state}")
    if videos := report.get("videos"):
        ids = {v["prompt_ids"] for v in videos}
        lines.append(f"videos: {len(videos)} pair(s), each video sampled once and the same frames and metadata given "
                     f"to every side; prompt ids {', '.join(sorted(ids))}; {_video_inputs(videos)}")  # fmt: skip
    if forms := report.get("input_forms"):
        states = []
        for name, f in forms.items():
            bad = f["failed_pairs"] or f["token_mismatches"]
            state = f"DIFFERENT, max abs Δ {f['max_abs_delta']:.2e}" if bad else "same"
            states.append(f"{name} ({f['pairs']} pairs): {state}")
        lines.append(f"input through the score template, against raw pairs: {'; '.join(states)}")
    if unofficial := tokens["official_mismatched_pairs"]:
        lines.append(f"note: ids differ from the official formatting in pairs {_some(unofficial)}")
    lines += _throughput(report.get("timings", {}), report.get("timing"))
    if note := report.get("timing_note"):
        lines.append(f"note: {note}")
    lines += _queries(report["rankings"])
    if len(m["endpoints"]) > 1:
        lines += ["", f"per pair: {next(iter(m['endpoints']))} shown, ok covers every label"]
    lines += _pair_table(report)
    return "\n".join(lines)


def _video_inputs(videos: list[dict]) -> str:
    """The videos' model inputs (grids, pixels, normalization) in a few words: where they differ, which pairs and
    sides."""
    states = [(v["index"], side, state) for v in videos for side, state in v.get("model_inputs", {}).items()]
    if differ := [f"pair {i} ({side})" for i, side, state in states if state.startswith("DIFFER")]:
        return f"model inputs DIFFER: {', '.join(differ[:5])}"
    kinds = {state for _, _, state in states}
    if kinds == {"the reference's"}:
        return "model inputs (grid, pixels, normalization) the reference's on every side"
    return "model inputs " + ("; ".join(sorted(kinds)) if kinds else "not compared")


def _some(indices: list[int], n: int = 20) -> str:
    shown = ", ".join(map(str, indices[:n]))
    return shown + (f" … ({len(indices)} in all)" if len(indices) > n else "")


SHOWN_PAIRS = 20
SHOWN_QUERIES = 10


def _ranking_lead(summary: dict | None) -> list[str]:
    """With judgements, the summary leads with what users get: ΔNDCG@10 and ΔMRR@10."""
    if not summary or "ndcg10" not in summary:
        return []
    ndcg, mrr, base = summary["ndcg10"], summary["mrr10"], summary["baseline"]
    state = "within" if summary["ndcg_ok"] else "OUTSIDE"
    sides = " · ".join(f"{side} {ndcg[side]:.4f}" for side in ndcg)
    return [
        f"**ΔNDCG@10 {summary['delta_ndcg10']:+.2e}** (converted − {base}; {state} ±{summary['ndcg_atol']:.0e}) · "
        f"ΔMRR@10 {summary['delta_mrr10']:+.2e} · {summary['judged_queries']} judged queries (largest |ΔNDCG@10| of "
        f"one query {summary['max_abs_query_delta_ndcg10']:.1e})",
        f"NDCG@10: {sides} · MRR@10: " + " · ".join(f"{side} {mrr[side]:.4f}" for side in mrr),
        "",
    ]


def _throughput(timings: dict, basis: str | None = None) -> list[str]:
    shown = [
        f"{side} {t['pairs_per_second']:.1f} pairs/s"
        + (f", {t['tokens_per_second']:.0f} tokens/s" if "tokens_per_second" in t else "")
        for side, t in timings.items()
        if "pairs_per_second" in t
    ]
    return [f"scoring: {'; '.join(shown)}" + (f" ({basis})" if basis else "")] if shown else []


def _queries(rankings: list[dict]) -> list[str]:
    """A line per query for a few, else their distribution and the worst ones."""
    if not rankings:
        return []
    lines = [""]
    if len(rankings) > SHOWN_QUERIES:
        taus = sorted(r["kendall_tau"] for r in rankings if r["kendall_tau"] is not None)
        top1 = sum(r["top1_equal"] for r in rankings) / len(rankings)
        top10 = sum(r["top10_overlap"] for r in rankings) / len(rankings)
        spread = f"Kendall τ min {taus[0]:.3f}, median {taus[len(taus) // 2]:.3f}; " if taus else ""
        lines.append(
            f"{len(rankings)} rankings: {spread}top-1 equal in {top1:.1%}, top-10 overlap {top10:.1%}; "
            f"the {SHOWN_QUERIES} that differ most:"
        )

    def badness(r: dict) -> tuple[float, float]:
        return (abs(r.get("delta_ndcg10") or 0.0), -(r["kendall_tau"] if r["kendall_tau"] is not None else 1.0))

    for r in sorted(rankings, key=badness, reverse=True)[:SHOWN_QUERIES]:
        tau = "n/a" if r["kendall_tau"] is None else f"{r['kendall_tau']:.3f}"
        ndcg = f", ΔNDCG@10 {r['delta_ndcg10']:+.1e}" if r.get("delta_ndcg10") is not None else ""
        lines.append(
            f"ranking {shorten(described(r['query']), 40)!r} ({r['documents']} docs): Kendall τ {tau}, "
            f"top-1 equal {r['top1_equal']}, top-10 overlap {r['top10_overlap']:.0%}{ndcg}"
        )
    return lines


def _pair_table(report: dict) -> list[str]:
    """Every pair for a few; the worst ``SHOWN_PAIRS`` of many (the JSON report, or its sidecar, keeps them all)."""
    shown, n = report["shown_pairs"], report["pair_count"]
    lines = [""]
    if n > len(shown):
        where = f" (every pair: {report['pairs_file']})" if report.get("pairs_file") else ""
        lines += [f"the {len(shown)} pairs of {n} with the largest abs Δ{where}:", ""]
    with_reference = bool(report.get("reference"))
    header = ("#", "query", "document", *(("reference",) if with_reference else ()), "original path", "converted",
              "abs Δ", "ok")  # fmt: skip
    rows = [
        (str(p["index"]), shorten(described(p["query"])), shorten(described(p["document"])) or "(empty)",
         *((f"{p['reference']:.6f}",) if with_reference else ()), f"{p['original']:.6f}",
         f"{p['converted']:.6f}", f"{p['abs_delta']:.1e}", "yes" if p["ok"] else "NO")
        for p in shown
    ]  # fmt: skip
    return [*lines, markdown_table(header, rows)]


def write_junit(report: dict, path: Path) -> None:
    """One test case per pair and judged endpoint (the converted side against the reference where there is one,
    so the XML agrees with the verdict), plus one for the prompt token ids. A report whose rows went to a sidecar
    gets one case per endpoint and one per failed pair instead: CI needs the failures, not 50,000 passes."""
    suite = ET.Element("testsuite", name=f"seqcls.verify.{report['backend']}")
    cases = 0
    failures = 0
    judged = report["reference"]["converted"] if report.get("reference") else report["metrics"]["endpoints"]
    rows = report.get("pairs")
    for name, endpoint in judged.items():
        failed = set(endpoint["failed_pairs"])
        classname = f"parity.{name.strip('/').replace('/', '.').replace(' ', '.')}"
        if rows is None:
            passed = ET.SubElement(suite, "testcase", classname=classname, name=f"{report['pair_count']} pairs")
            cases += 1
            if failed:
                failures += 1
                ET.SubElement(passed, "failure", message=f"{len(failed)} pairs outside {report['atol']:.0e}")
        for i in sorted(failed) if rows is None else range(len(rows)):
            label = f"pair {i}" + (f": {rows[i]['query'][:60]}" if rows is not None else "")
            case = ET.SubElement(suite, "testcase", classname=classname, name=label)
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


def write_plot(report: dict, path: Path, original: list[float], converted: list[float]) -> bool:
    """``original`` and ``converted``: the first endpoint's scores, per pair. False when matplotlib is missing: the
    plot is a convenience, the verdict does not depend on it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    failed = set(report["failed_pairs"])
    colors = ["tab:red" if i in failed else "tab:blue" for i in range(len(original))]
    fig, (ax, hist) = plt.subplots(1, 2, figsize=(10, 5), dpi=120)
    ax.plot([0, 1], [0, 1], color="0.8", lw=1, zorder=0)
    ax.scatter(original, converted, c=colors, s=18 if len(colors) < 2000 else 2)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="original score", ylabel="converted score")
    ax.set_title(
        f"{report['backend']} · {report['dtype']} · max abs Δ {report['metrics']['max_abs_delta']:.1e}", fontsize=10
    )
    deltas = [max(abs(a - b), 1e-12) for a, b in zip(original, converted)]
    low, high = math.log10(min(deltas)), math.log10(max(max(deltas), report["atol"]) * 1.01)
    hist.hist(deltas, bins=[10 ** (low + (high - low) * i / 40) for i in range(41)], color="tab:blue")
    hist.axvline(report["atol"], color="tab:red", lw=1, label=f"atol {report['atol']:.0e}")
    hist.set(xscale="log", xlabel="|Δscore| (converted − original path)", ylabel="pairs")
    hist.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return True
