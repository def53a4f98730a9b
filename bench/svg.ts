/**
 * The macro benchmark's chart, as hand-written SVG (no dependencies): one panel per metric, a
 * horizontal bar per scenario at its median, a whisker from the lowest to the highest trial, the
 * value and its ratio to kernel VXLAN printed next to the bar. Each panel has its own scale.
 */
import type { LabMode } from '../src/lab/topology.js';
import { METRICS, type MetricDef, type ScenarioSummary } from './report.js';

const WIDTH = 980;
const COLUMNS = 2;
const MARGIN = 20;
const HEADER_H = 96;
const PANEL_GAP = 20;
const PANEL_TITLE_H = 26;
const LABEL_W = 170;
const VALUE_W = 110;
const BAR_H = 14;
const ROW_H = 20;
const FONT = 'font-family="DejaVu Sans, Helvetica, Arial, sans-serif"';

const MODE_COLOURS: Record<LabMode, string> = { plain: '#8c8c8c', 'kernel-vxlan': '#1f6fb4', tulle: '#e6791a' };
/** tulle with offloads explicitly off: the same hue, lighter. */
const TULLE_OFFLOADS_OFF = '#f5bf8c';
/** The minimal userspace tunnels (plain labs with `userspaceTunnel`): in C, and in Node.js. */
const USERSPACE_TUNNEL = '#6a9f58';
const NODE_TUNNEL = '#a3c98f';

/** Text content and attribute values with XML's five special characters escaped. */
export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

/** A round upper bound for an axis: 1, 2, 2.5 or 5 times a power of ten, at least `x`. */
export function niceMax(x: number): number {
  if (!Number.isFinite(x) || x <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(x));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= x) return m * p;
  return 10 * p;
}

function colour(r: ScenarioSummary): string {
  if (r.scenario.userspaceTunnel === 'c') return USERSPACE_TUNNEL;
  if (r.scenario.userspaceTunnel === 'node') return NODE_TUNNEL;
  return r.scenario.mode === 'tulle' && r.scenario.offloads === false ? TULLE_OFFLOADS_OFF : MODE_COLOURS[r.scenario.mode];
}

const num = (x: number): string => (Math.round(x * 10) / 10).toString();

function panel(m: MetricDef, rows: readonly ScenarioSummary[], x0: number, y0: number, w: number): string[] {
  const out: string[] = [];
  const barW = w - LABEL_W - VALUE_W;
  const top = Math.max(0, ...rows.map((r) => r.metrics[m.key]?.max ?? 0).filter(Number.isFinite));
  const scale = niceMax(top);
  const px = (v: number): number => (Math.max(0, v) / scale) * barW;
  const better = m.better === 'higher' ? 'higher is better' : 'lower is better';
  out.push(`<text x="${num(x0)}" y="${num(y0 + 16)}" font-size="13" font-weight="bold">${escapeXml(`${m.label} [${m.unit}]`)}<tspan dx="8" font-weight="normal" fill="#666">${escapeXml(better)}</tspan></text>`);
  const bx = x0 + LABEL_W;
  const yTop = y0 + PANEL_TITLE_H;
  const yBottom = yTop + rows.length * ROW_H;
  out.push(`<line x1="${num(bx)}" y1="${num(yTop - 4)}" x2="${num(bx)}" y2="${num(yBottom)}" stroke="#444" stroke-width="1"/>`);
  out.push(`<line x1="${num(bx + barW)}" y1="${num(yTop - 4)}" x2="${num(bx + barW)}" y2="${num(yBottom)}" stroke="#ddd" stroke-width="1"/>`);
  out.push(`<text x="${num(bx + barW)}" y="${num(yBottom + 12)}" font-size="10" fill="#666" text-anchor="middle">${escapeXml(String(scale))}</text>`);
  out.push(`<text x="${num(bx)}" y="${num(yBottom + 12)}" font-size="10" fill="#666" text-anchor="middle">0</text>`);
  rows.forEach((r, i) => {
    const y = yTop + i * ROW_H;
    const s = r.metrics[m.key];
    out.push(`<text x="${num(bx - 6)}" y="${num(y + BAR_H - 3)}" font-size="11" text-anchor="end">${escapeXml(r.scenario.name)}</text>`);
    if (!s || s.n === 0 || !Number.isFinite(s.median)) {
      out.push(`<text x="${num(bx + 4)}" y="${num(y + BAR_H - 3)}" font-size="11" fill="#a00">n/a</text>`);
      return;
    }
    out.push(`<rect x="${num(bx)}" y="${num(y)}" width="${num(px(s.median))}" height="${BAR_H}" fill="${colour(r)}"/>`);
    if (s.n > 1) {
      const ym = y + BAR_H / 2;
      out.push(`<line x1="${num(bx + px(s.min))}" y1="${num(ym)}" x2="${num(bx + px(s.max))}" y2="${num(ym)}" stroke="#222" stroke-width="1.5"/>`);
    }
    const q = r.ratios[m.key];
    const label = `${s.median.toFixed(m.digits)}${q === null || q === undefined ? '' : ` (${q.toFixed(2)}x)`}`;
    out.push(`<text x="${num(bx + Math.max(px(s.median), px(s.max)) + 5)}" y="${num(y + BAR_H - 3)}" font-size="11">${escapeXml(label)}</text>`);
  });
  return out;
}

export interface ChartText {
  title: string;
  subtitle: string;
}

/** The whole chart as an SVG document. */
export function renderChart(rows: readonly ScenarioSummary[], text: ChartText, metrics: readonly MetricDef[] = METRICS): string {
  const panelW = (WIDTH - 2 * MARGIN - (COLUMNS - 1) * PANEL_GAP) / COLUMNS;
  const panelH = PANEL_TITLE_H + rows.length * ROW_H + 24;
  const panelRows = Math.ceil(metrics.length / COLUMNS);
  const height = HEADER_H + panelRows * (panelH + PANEL_GAP) + MARGIN;
  const out: string[] = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${num(height)}" viewBox="0 0 ${WIDTH} ${num(height)}" ${FONT}>`,
    `<rect x="0" y="0" width="${WIDTH}" height="${num(height)}" fill="#fff"/>`,
    `<text x="${MARGIN}" y="28" font-size="17" font-weight="bold">${escapeXml(text.title)}</text>`,
    `<text x="${MARGIN}" y="48" font-size="11" fill="#444">${escapeXml(text.subtitle)}</text>`,
  ];
  const legend: [string, string][] = [['plain routing', MODE_COLOURS.plain], ['kernel VXLAN', MODE_COLOURS['kernel-vxlan']], ['tulle', MODE_COLOURS.tulle], ['tulle, offloads off', TULLE_OFFLOADS_OFF], ['minimal C tunnel', USERSPACE_TUNNEL]];
  if (rows.some((r) => r.scenario.userspaceTunnel === 'node')) legend.push(['minimal Node tunnel', NODE_TUNNEL]);
  legend.forEach(([name, c], i) => {
    const x = MARGIN + i * 150;
    out.push(`<rect x="${x}" y="56" width="10" height="10" fill="${c}"/>`);
    out.push(`<text x="${x + 14}" y="65" font-size="11">${escapeXml(name)}</text>`);
  });
  out.push(`<text x="${MARGIN}" y="84" font-size="11" fill="#444">${escapeXml('bar = median, line = lowest..highest trial, (x) = ratio to kernel VXLAN of the same MTU in the same run')}</text>`);
  metrics.forEach((m, i) => {
    const x = MARGIN + (i % COLUMNS) * (panelW + PANEL_GAP);
    const y = HEADER_H + Math.floor(i / COLUMNS) * (panelH + PANEL_GAP);
    out.push(`<g>`, ...panel(m, rows, x, y, panelW), `</g>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
