"""Inline SVG charts for the report: no scripts, no external fonts or images, sized by viewBox so they
scale with the page. Each chart has a <title> for screen readers; the report puts a table of the
same numbers beside it."""
import html
import math
from typing import Dict, List, Optional, Sequence, Tuple

CANDIDATE, BASELINE, ACCENT, MUTED, BAD = "#1f5fbf", "#8a8f98", "#b35c00", "#d0d4da", "#b3261e"
FONT = 'font-family="system-ui, -apple-system, Segoe UI, sans-serif"'


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000 or abs(value) < 0.01:
        return f"{value:.2g}"
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _svg(width: int, height: int, title: str, body: List[str]) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" role="img" {FONT} font-size="11" style="max-width:100%;height:auto">'
            f"<title>{_e(title)}</title>" + "".join(body) + "</svg>")


class _Axes:
    def __init__(self, width: int, height: int, x_domain, y_domain, left=46, right=12, top=12, bottom=36):
        self.width, self.height = width, height
        self.left, self.right, self.top, self.bottom = left, right, top, bottom
        self.x0, self.x1 = x_domain
        self.y0, self.y1 = y_domain

    def x(self, value: float) -> float:
        span = (self.x1 - self.x0) or 1.0
        return self.left + (value - self.x0) / span * (self.width - self.left - self.right)

    def y(self, value: float) -> float:
        span = (self.y1 - self.y0) or 1.0
        return self.height - self.bottom - (value - self.y0) / span * (self.height - self.top - self.bottom)

    def frame(self, x_label: str, y_label: str, ticks: int = 5) -> List[str]:
        parts = [f'<rect x="{self.left}" y="{self.top}" width="{self.width - self.left - self.right}" '
                 f'height="{self.height - self.top - self.bottom}" fill="none" stroke="{MUTED}"/>']
        for i in range(ticks + 1):
            xv = self.x0 + (self.x1 - self.x0) * i / ticks
            yv = self.y0 + (self.y1 - self.y0) * i / ticks
            parts.append(f'<line x1="{self.x(xv):.1f}" y1="{self.height - self.bottom}" x2="{self.x(xv):.1f}" '
                         f'y2="{self.height - self.bottom + 4}" stroke="#555"/>'
                         f'<text x="{self.x(xv):.1f}" y="{self.height - self.bottom + 15}" text-anchor="middle">'
                         f"{_fmt(xv)}</text>")
            parts.append(f'<line x1="{self.left - 4}" y1="{self.y(yv):.1f}" x2="{self.left}" y2="{self.y(yv):.1f}" '
                         f'stroke="#555"/><text x="{self.left - 6}" y="{self.y(yv) + 4:.1f}" text-anchor="end">'
                         f"{_fmt(yv)}</text>")
        parts.append(f'<text x="{(self.left + self.width - self.right) / 2:.1f}" y="{self.height - 4}" '
                     f'text-anchor="middle">{_e(x_label)}</text>')
        parts.append(f'<text transform="translate(12 {(self.top + self.height - self.bottom) / 2:.1f}) rotate(-90)" '
                     f'text-anchor="middle">{_e(y_label)}</text>')
        return parts


def _legend(items: Sequence[Tuple[str, str, bool]], x: float, y: float) -> List[str]:
    parts = []
    for i, (label, color, dashed) in enumerate(items):
        dash = ' stroke-dasharray="5 3"' if dashed else ""
        yy = y + i * 14
        parts.append(f'<line x1="{x}" y1="{yy}" x2="{x + 18}" y2="{yy}" stroke="{color}" stroke-width="2"{dash}/>'
                     f'<text x="{x + 22}" y="{yy + 4}">{_e(label)}</text>')
    return parts


def line_chart(title: str, series: List[dict], x_label: str, y_label: str, x_domain=(0.0, 1.0),
               y_domain=(0.0, 1.0), diagonal: bool = False, markers: bool = False,
               width: int = 360, height: int = 300) -> str:
    """series: [{"label", "points": [(x, y)], "color", "dashed"}]."""
    axes = _Axes(width, height, x_domain, y_domain)
    body = axes.frame(x_label, y_label)
    if diagonal:
        body.append(f'<line x1="{axes.x(x_domain[0]):.1f}" y1="{axes.y(y_domain[0]):.1f}" '
                    f'x2="{axes.x(x_domain[1]):.1f}" y2="{axes.y(y_domain[1]):.1f}" stroke="{MUTED}" '
                    'stroke-dasharray="3 3"/>')
    for item in series:
        points = [(x, y) for x, y in item["points"] if x is not None and y is not None
                  and not (math.isnan(x) or math.isnan(y))]
        if not points:
            continue
        dash = ' stroke-dasharray="5 3"' if item.get("dashed") else ""
        path = " ".join(f"{axes.x(x):.1f},{axes.y(y):.1f}" for x, y in points)
        body.append(f'<polyline points="{path}" fill="none" stroke="{item["color"]}" stroke-width="2"{dash}/>')
        if markers:
            body.extend(f'<circle cx="{axes.x(x):.1f}" cy="{axes.y(y):.1f}" r="3" fill="{item["color"]}"/>'
                        for x, y in points)
    # Bottom right: empty for ROC, precision-recall and calibration curves alike.
    body.extend(_legend([(s["label"], s["color"], bool(s.get("dashed"))) for s in series],
                        axes.x(x_domain[0] + 0.5 * (x_domain[1] - x_domain[0])),
                        axes.y(y_domain[0]) - 14 * len(series) - 2))
    return _svg(width, height, title, body)


def matrix_chart(title: str, rows: List[str], columns: List[str], values: List[List[float]], row_label: str,
                 column_label: str, cell: int = 64) -> str:
    """A grid of counts, shaded by the share of the largest."""
    left, top = 110, 48
    width, height = max(left + cell * len(columns) + 10, 260), top + cell * len(rows) + 10
    largest = max((v for row in values for v in row), default=0) or 1
    body = [f'<text x="{left + cell * len(columns) / 2:.1f}" y="14" text-anchor="middle">{_e(column_label)}</text>']
    for j, name in enumerate(columns):
        body.append(f'<text x="{left + cell * j + cell / 2:.1f}" y="{36 if j % 2 else 28}" text-anchor="middle">'
                    f"{_e(name)}</text>")
    for i, name in enumerate(rows):
        body.append(f'<text x="{left - 6}" y="{top + cell * i + cell / 2 + 4:.1f}" text-anchor="end">{_e(name)}</text>')
        for j, value in enumerate(values[i]):
            share = value / largest
            fill = f"rgba(31,95,191,{0.1 + 0.8 * share:.2f})"
            color = "#fff" if share > 0.55 else "#111"
            body.append(f'<rect x="{left + cell * j}" y="{top + cell * i}" width="{cell - 2}" height="{cell - 2}" '
                        f'fill="{fill}"/><text x="{left + cell * j + cell / 2 - 1:.1f}" '
                        f'y="{top + cell * i + cell / 2 + 4:.1f}" text-anchor="middle" fill="{color}">'
                        f"{_fmt(value) if value < 1000 else f'{value:,.0f}'}</text>")
    body.append(f'<text transform="translate(12 {top + cell * len(rows) / 2:.1f}) rotate(-90)" '
                f'text-anchor="middle">{_e(row_label)}</text>')
    return _svg(width, height, title, body)


def bar_chart(title: str, bars: List[Tuple[str, float]], value_label: str, reference: Optional[float] = None,
              width: int = 520, bar: int = 16) -> str:
    """Horizontal bars around zero (residuals by slice)."""
    left, right, top = 170, 20, 10
    height = top + bar * len(bars) + 34
    values = [v for _, v in bars] + [0.0] + ([reference] if reference is not None else [])
    low, high = min(values), max(values)
    if low == high:
        high = low + 1
    axes = _Axes(width, height, (low, high), (0, 1), left=left, right=right, top=top, bottom=34)
    body = [f'<line x1="{axes.x(0):.1f}" y1="{top}" x2="{axes.x(0):.1f}" y2="{height - 34}" stroke="#555"/>']
    for i, (label, value) in enumerate(bars):
        y = top + i * bar
        x0, x1 = sorted((axes.x(0), axes.x(value)))
        body.append(f'<text x="{left - 6}" y="{y + bar * 0.7:.1f}" text-anchor="end">{_e(label[:28])}</text>'
                    f'<rect x="{x0:.1f}" y="{y + 2}" width="{max(x1 - x0, 0.5):.1f}" height="{bar - 4}" '
                    f'fill="{CANDIDATE if value >= 0 else ACCENT}"/>')
    for i in range(5):
        value = low + (high - low) * i / 4
        body.append(f'<text x="{axes.x(value):.1f}" y="{height - 20}" text-anchor="middle">{_fmt(value)}</text>')
    body.append(f'<text x="{(left + width - right) / 2:.1f}" y="{height - 4}" text-anchor="middle">'
                f"{_e(value_label)}</text>")
    return _svg(width, height, title, body)


def interval_chart(title: str, rows: List[Tuple[str, Optional[float], Optional[List[float]], bool]],
                   value_label: str, width: int = 420, row: int = 18) -> str:
    """One dot per group with its 95% interval on [0, 1]; groups too small to compare in grey."""
    left, right, top = 170, 16, 8
    height = top + row * len(rows) + 34
    axes = _Axes(width, height, (0.0, 1.0), (0, 1), left=left, right=right, top=top, bottom=34)
    body = []
    for i in range(6):
        value = i / 5
        body.append(f'<line x1="{axes.x(value):.1f}" y1="{top}" x2="{axes.x(value):.1f}" y2="{height - 34}" '
                    f'stroke="{MUTED}"/><text x="{axes.x(value):.1f}" y="{height - 20}" text-anchor="middle">'
                    f"{_fmt(value)}</text>")
    for i, (label, value, interval, sufficient) in enumerate(rows):
        y = top + i * row + row / 2
        color = CANDIDATE if sufficient else BASELINE
        body.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_e(label[:28])}</text>')
        if interval:
            body.append(f'<line x1="{axes.x(interval[0]):.1f}" y1="{y:.1f}" x2="{axes.x(interval[1]):.1f}" '
                        f'y2="{y:.1f}" stroke="{color}" stroke-width="2"/>')
        if value is not None:
            body.append(f'<circle cx="{axes.x(value):.1f}" cy="{y:.1f}" r="4" fill="{color}"/>')
    body.append(f'<text x="{(left + width - right) / 2:.1f}" y="{height - 4}" text-anchor="middle">'
                f"{_e(value_label)}</text>")
    return _svg(width, height, title, body)


def decile_strip(title: str, deciles: List[float], width: int = 160, height: int = 22) -> str:
    """Where the deciles of a numeric feature lie between the first and the ninth."""
    low, high = deciles[0], deciles[-1]
    span = (high - low) or 1.0
    body = [f'<line x1="4" y1="{height / 2}" x2="{width - 4}" y2="{height / 2}" stroke="{MUTED}"/>']
    for i, value in enumerate(deciles):
        x = 4 + (value - low) / span * (width - 8)
        tall = 8 if i == len(deciles) // 2 else 5
        body.append(f'<line x1="{x:.1f}" y1="{height / 2 - tall}" x2="{x:.1f}" y2="{height / 2 + tall}" '
                    f'stroke="{CANDIDATE}" stroke-width="{2 if tall == 8 else 1}"/>')
    return _svg(width, height, title, body)


def lineage_graph(title: str, nodes: List[dict], edges: List[dict], ordering: List[Tuple[int, int]]) -> str:
    """A layered drawing of artifacts (boxes) and what made them (arrows), left to right; dashed arrows
    are order without an artifact (a gate)."""
    ids = {node["artifact_id"] for node in nodes}
    links = [(e["source"], e["target"]) for e in edges if e["source"] in ids and e["target"] in ids]
    all_links = links + [pair for pair in ordering if pair[0] in ids and pair[1] in ids]
    layer: Dict[int, int] = {node_id: 0 for node_id in ids}
    for _ in range(len(ids)):
        changed = False
        for source, target in all_links:
            if layer[target] < layer[source] + 1:
                layer[target] = layer[source] + 1
                changed = True
        if not changed:
            break
    consumers = {}
    for source, target in all_links:
        consumers.setdefault(source, []).append(target)
    for node in nodes:
        if node.get("role") == "baseline" and node["artifact_id"] in consumers:
            layer[node["artifact_id"]] = max(0, min(layer[t] for t in consumers[node["artifact_id"]]) - 1)
    box_w, box_h, gap_x, gap_y = 122, 52, 24, 16
    columns: Dict[int, List[dict]] = {}
    for node in nodes:
        columns.setdefault(layer[node["artifact_id"]], []).append(node)
    position = {}
    for column, members in columns.items():
        for row, node in enumerate(members):
            position[node["artifact_id"]] = (10 + column * (box_w + gap_x), 10 + row * (box_h + gap_y))
    width = 20 + (max(columns) + 1) * (box_w + gap_x) - gap_x if columns else 200
    height = 20 + max((len(m) for m in columns.values()), default=1) * (box_h + gap_y) - gap_y
    body = ['<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
            f'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{BASELINE}"/></marker></defs>']
    for (source, target), dashed in [(pair, False) for pair in dict.fromkeys(links)] + \
            [(pair, True) for pair in ordering if pair[0] in ids and pair[1] in ids]:
        (x0, y0), (x1, y1) = position[source], position[target]
        sx, sy, tx, ty = x0 + box_w, y0 + box_h / 2, x1, y1 + box_h / 2
        bend = max(20.0, (tx - sx) / 2)
        dash = ' stroke-dasharray="5 4"' if dashed else ""
        curve = f"M{sx:.1f},{sy:.1f} C{sx + bend:.1f},{sy:.1f} {tx - bend:.1f},{ty:.1f} {tx:.1f},{ty:.1f}"
        body.append(f'<path d="{curve}" fill="none" stroke="{BASELINE}" stroke-width="1.3"{dash} '
                    'marker-end="url(#arrow)"/>')
    for node in nodes:
        x, y = position[node["artifact_id"]]
        bad = node.get("status") == "bad"
        stroke = BAD if bad else (CANDIDATE if node.get("status") == "good" else "#555")
        fill = "#fdecea" if bad else ("#eaf1fb" if node.get("status") == "good" else "#fff")
        body.append(f'<rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" rx="6" fill="{fill}" '
                    f'stroke="{stroke}" stroke-width="1.5"/>')
        body.append(f'<text x="{x + 8}" y="{y + 17}" font-weight="600">{_e(node["label"])}</text>')
        for i, line in enumerate(node.get("details", [])[:2]):
            body.append(f'<text x="{x + 8}" y="{y + 32 + i * 13}" fill="#444">{_e(str(line)[:21])}</text>')
    return _svg(int(width), int(height), title, body)
