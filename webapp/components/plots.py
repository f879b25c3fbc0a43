"""Plotly figures from evaluation reports (issue #4). Pure functions: report in, figure out.

No gradio here, so the benchmark and tests can build the figures without a UI.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from webapp.pipeline.evaluate import QualityReport
from webapp.pipeline.manifest import ManifestItem

REF_COLOR = "#1f77b4"
CAND_COLOR = "#ff7f0e"
MAX_HEATMAP_COLUMNS = 600
"""A heatmap column per MFCC frame would send ~40 numbers per 32 ms: a 10-minute clip became
megabytes of JSON. Past this many frames, columns are averaged in groups (the metrics are not)."""
MAX_LINE_POINTS = 4000

_LAYOUT = dict(margin=dict(l=50, r=20, t=50, b=45), height=340, template="plotly_white",
               legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0))


def _features(report: QualityReport):
    if report.features is None:
        raise ValueError("this report has no feature arrays to plot")
    return report.features


def _pool_columns(m: np.ndarray, group: int) -> np.ndarray:
    if group <= 1:
        return m
    pad = (-m.shape[1]) % group
    if pad:  # the last group is averaged over the frames it has
        m = np.concatenate([m, np.full((m.shape[0], pad), np.nan)], axis=1)
    return np.nanmean(m.reshape(m.shape[0], -1, group), axis=2)


def _thin(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Every k-th point, so a line has at most ``MAX_LINE_POINTS`` (for display only)."""
    step = int(np.ceil(len(arrays[0]) / MAX_LINE_POINTS)) if len(arrays[0]) else 1
    return tuple(a[::step] for a in arrays)


def mfcc_heatmaps(report: QualityReport) -> go.Figure:
    """The two MFCC matrices side by side, one colour scale, time in seconds."""
    f = _features(report)
    # c0 (loudness) dwarfs the rest; leave it out so the shape of the spectrum is visible.
    # Each coefficient is standardised over both clips together: c1 spans hundreds while c30
    # spans a few units, and one shared scale would show only c1.
    a, b = f.mfcc_ref[1:], f.mfcc_cand[1:]
    both = np.concatenate([a, b], axis=1)
    mu, sd = both.mean(axis=1, keepdims=True), both.std(axis=1, keepdims=True) + 1e-9
    a, b = (a - mu) / sd, (b - mu) / sd
    lo, hi = -3.0, 3.0
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=("Reference", "Candidate"))
    for col, m in ((1, a), (2, b)):
        group = int(np.ceil(m.shape[1] / MAX_HEATMAP_COLUMNS))
        m = _pool_columns(m, group).astype(np.float32)  # float32: half the JSON
        t = (np.arange(m.shape[1]) * group + (group - 1) / 2) * f.mfcc_hop_s
        fig.add_trace(go.Heatmap(z=m, x=t, y=np.arange(1, m.shape[0] + 1), zmin=lo, zmax=hi,
                                 colorscale="Viridis", showscale=col == 2,
                                 colorbar=dict(title="z")), row=1, col=col)
        fig.update_xaxes(title_text="time (s)", row=1, col=col)
    fig.update_yaxes(title_text="MFCC coefficient", row=1, col=1)
    fig.update_layout(title="MFCCs 1-39 of both clips (standardised per coefficient)", **_LAYOUT)
    return fig


def mean_vectors(report: QualityReport) -> go.Figure:
    """What the design's metric compares: the time-averaged MFCC vector of each clip."""
    f = _features(report)
    k = np.arange(len(f.mean_ref))
    fig = go.Figure([
        go.Scatter(x=k, y=f.mean_ref, mode="lines+markers", name="reference", line_color=REF_COLOR),
        go.Scatter(x=k, y=f.mean_cand, mode="lines+markers", name="candidate", line_color=CAND_COLOR),
    ])
    sim = report.value("mfcc_similarity")
    fig.update_layout(title=f"Mean MFCC vectors (cosine similarity {sim:.3f})",
                      xaxis_title="MFCC coefficient", yaxis_title="mean value", **_LAYOUT)
    return fig


def dtw_similarity(report: QualityReport, window: int = 15) -> go.Figure:
    """Frame similarity along the DTW path, on the reference's time axis: where they differ."""
    f = _features(report)
    t = f.path[:, 0] * f.dtw_hop_s
    sim = f.path_similarity
    w = max(1, min(window, len(sim)))
    smooth = np.convolve(sim, np.ones(w) / w, mode="same") if len(sim) else sim
    t, sim, smooth = _thin(t, sim, smooth)
    fig = go.Figure([
        go.Scatter(x=t, y=sim, mode="lines", name="per frame", line=dict(color="#bbbbbb", width=1)),
        go.Scatter(x=t, y=smooth, mode="lines", name="smoothed", line=dict(color=REF_COLOR, width=2)),
    ])
    thr = report.thresholds.min_dtw_similarity
    if thr is not None:
        fig.add_hline(y=thr, line_dash="dash", line_color="#d62728",
                      annotation_text=f"threshold {thr:g}", annotation_position="bottom right")
    fig.update_layout(title=f"Similarity along the alignment (mean "
                            f"{report.value('dtw_similarity'):.3f})",
                      xaxis_title="reference time (s)", yaxis_title="cosine similarity",
                      yaxis_range=[-0.5, 1.05], **_LAYOUT)
    return fig


def f0_contours(report: QualityReport) -> go.Figure:
    """Pitch of both clips over time (unvoiced frames are gaps), plus the candidate's pitch
    moved onto the reference's time axis along the DTW path."""
    f = _features(report)
    fig = go.Figure()
    for name, f0, color in (("reference", f.f0_ref, REF_COLOR), ("candidate", f.f0_cand, CAND_COLOR)):
        t = np.arange(len(f0)) * f.f0_hop_s
        fig.add_trace(go.Scatter(x=t, y=f0, mode="lines", name=name, connectgaps=False,
                                 line=dict(color=color, width=2)))
    if len(f.f0_cand) and len(f.path):
        per = f.f0_hop_s / f.dtw_hop_s
        ci = (f.path[:, 1] / per).astype(int)
        inside = ci < len(f.f0_cand)  # pitch covers at most the first MAX_F0_S seconds
        t, y = _thin(f.path[inside, 0] * f.dtw_hop_s, f.f0_cand[ci[inside]])
        fig.add_trace(go.Scatter(x=t, y=y, mode="lines",
                                 name="candidate, aligned", connectgaps=False,
                                 line=dict(color=CAND_COLOR, width=1, dash="dot")))
    corr = report.value("f0_correlation")
    label = "n/a" if corr is None else f"{corr:.2f}"
    fig.update_layout(title=f"Pitch (F0) contours (correlation {label})", xaxis_title="time (s)",
                      yaxis_title="F0 (Hz)", **_LAYOUT)
    return fig


def all_figures(report: QualityReport) -> dict[str, go.Figure]:
    return {"heatmaps": mfcc_heatmaps(report), "means": mean_vectors(report),
            "dtw": dtw_similarity(report), "f0": f0_contours(report)}


def batch_summary(items: Sequence[ManifestItem]) -> go.Figure:
    """One bar per manifest row: DTW similarity (bars) and MCD (markers), failures in red."""
    ok = [i for i in items if i.report is not None]
    labels = [f"line {i.row.line}" for i in ok]
    sim = [i.report.value("dtw_similarity") for i in ok]
    mcd = [i.report.value("mcd_db") for i in ok]
    colors = ["#2ca02c" if i.passed else "#d62728" for i in ok]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Bar(x=labels, y=sim, marker_color=colors, name="aligned similarity"))
    fig.add_trace(go.Scatter(x=labels, y=mcd, mode="markers", marker=dict(size=10, color="#444"),
                             name="MCD (dB)"), secondary_y=True)
    fig.update_yaxes(title_text="aligned similarity", range=[0, 1.05], secondary_y=False)
    fig.update_yaxes(title_text="MCD (dB)", rangemode="tozero", secondary_y=True)
    # A few rows would otherwise be drawn as page-wide bars.
    fig.update_layout(title="Batch results (green = pass, red = fail)",
                      bargap=0.5 if len(ok) > 3 else 0.8, **_LAYOUT)
    return fig
