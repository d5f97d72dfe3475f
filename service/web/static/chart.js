// Small SVG charts of our own: no dependency, nothing inline that the CSP would block (colours
// come from classes in app.css), and every chart carries its numbers as a table too, for screen
// readers and for anyone who prefers numbers to pictures.

import { h, s, uid } from './dom.js';
import { fmtDate, fmtNumber, L } from './i18n.js';

const H = 300;
/** Drawn at the width it is shown at (a phone gets a narrower picture, not smaller text). */
const width = () => Math.max(320, Math.min(720, (window.innerWidth || 720) - 56));
const PAD = { left: 48, right: 16, top: 16, bottom: 36 };
const DAY = 86400000;

function figure(title, description, chart, table) {
  const titleId = uid('chart-title');
  const descId = uid('chart-desc');
  chart.setAttribute('role', 'img');
  chart.setAttribute('aria-labelledby', `${titleId} ${descId}`);
  chart.prepend(s('title', { id: titleId }, title), s('desc', { id: descId }, description));
  return h('figure', { class: 'chart' },
    h('figcaption', {}, title),
    chart,
    h('details', { class: 'chart-table' }, h('summary', {}, L('Toon als tabel', 'Show as a table')), table));
}

function ticks(min, max, count) {
  const step = niceStep((max - min) / count);
  const out = [];
  for (let v = Math.ceil(min / step) * step; v <= max + 1e-9; v += step) out.push(v);
  return out;
}

function niceStep(raw) {
  const power = 10 ** Math.floor(Math.log10(raw || 1));
  const unit = raw / power;
  return (unit <= 1 ? 1 : unit <= 2 ? 2 : unit <= 5 ? 5 : 10) * power;
}

function monthTicks(from, to, room) {
  const out = [];
  const months = (to.getFullYear() - from.getFullYear()) * 12 + to.getMonth() - from.getMonth();
  const most = Math.max(2, Math.floor(room / 56));
  const every = [1, 2, 3, 6, 12, 24].find((n) => months / n <= most) || 24;
  const d = new Date(from.getFullYear(), from.getMonth() + 1, 1);
  while (d <= to) {
    if (d.getMonth() % every === 0) out.push(new Date(d));
    d.setMonth(d.getMonth() + 1);
  }
  return out;
}

/**
 * A chart over time. series: [{label, cls, kind: 'step'|'bar', dash, points: [{start, end, value}]}]
 * (start/end are Dates; end null = ongoing); bands: [{start, end, label}] shaded behind (sick leave).
 */
export function timeChart({ title, description, unit, from, to, series, bands = [] }) {
  const W = width();
  const values = series.flatMap((x) => x.points.map((p) => p.value));
  const yMax = Math.max(1, ...values) * 1.1;
  const x = (d) => PAD.left + ((d - from) / (to - from)) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - (v / yMax) * (H - PAD.top - PAD.bottom);
  const clip = (d) => new Date(Math.min(Math.max(d, from), to));
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart-svg', focusable: 'false' });
  for (const band of bands) {
    const a = x(clip(band.start));
    const b = x(clip(band.end || to));
    if (b > a) {
      svg.append(s('rect', { x: a, y: PAD.top, width: b - a, height: H - PAD.top - PAD.bottom, class: 'band' },
        s('title', {}, band.label)));
    }
  }
  for (const t of ticks(0, yMax, 5)) {
    svg.append(s('line', { x1: PAD.left, x2: W - PAD.right, y1: y(t), y2: y(t), class: 'grid' }),
      s('text', { x: PAD.left - 6, y: y(t) + 4, class: 'axis-label', 'text-anchor': 'end' }, fmtNumber(t, 0)));
  }
  for (const t of monthTicks(from, to, W - PAD.left - PAD.right)) {
    const label = t.getMonth() === 0 ? String(t.getFullYear())
      : t.toLocaleDateString(document.documentElement.lang === 'en' ? 'en-GB' : 'nl-NL', { month: 'short' });
    svg.append(s('line', { x1: x(t), x2: x(t), y1: H - PAD.bottom, y2: H - PAD.bottom + 4, class: 'axis' }),
      s('text', { x: x(t), y: H - PAD.bottom + 18, class: 'axis-label', 'text-anchor': 'middle' }, label));
  }
  svg.append(s('line', { x1: PAD.left, x2: W - PAD.right, y1: H - PAD.bottom, y2: H - PAD.bottom, class: 'axis' }),
    s('text', { x: 4, y: PAD.top - 4, class: 'axis-label' }, unit));
  for (const serie of series) {
    const points = serie.points.filter((p) => (p.end || to) >= from && p.start <= to)
      .sort((a, b) => a.start - b.start);
    if (serie.kind === 'bar') {
      for (const p of points) {
        const a = x(clip(p.start));
        const b = x(clip(p.end || to));
        svg.append(s('rect', { x: a + 1, y: y(p.value), width: Math.max(2, b - a - 2), height: y(0) - y(p.value), class: `bar ${serie.cls}` },
          s('title', {}, `${serie.label}: ${fmtNumber(p.value)} ${unit} (${fmtDate(p.start)})`)));
      }
    } else {
      let d = '';
      for (const p of points) {
        const a = x(clip(p.start));
        const b = x(clip(p.end || to));
        d += `${d ? 'L' : 'M'}${a.toFixed(1)},${y(p.value).toFixed(1)}L${b.toFixed(1)},${y(p.value).toFixed(1)}`;
      }
      if (d) svg.append(s('path', { d, class: `line ${serie.cls}${serie.dash ? ' dashed' : ''}` }));
    }
  }
  const legend = h('ul', { class: 'legend' },
    series.map((serie) => h('li', {}, h('span', { class: `swatch ${serie.cls}${serie.dash ? ' dashed' : ''}`, 'aria-hidden': 'true' }), serie.label)),
    bands.length ? h('li', {}, h('span', { class: 'swatch band', 'aria-hidden': 'true' }), bands[0].kind || L('Verzuim', 'Sick leave')) : null);
  const table = h('table', {},
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, L('Reeks', 'Series')), h('th', { scope: 'col' }, L('Van', 'From')),
      h('th', { scope: 'col' }, L('Tot', 'Until')), h('th', { scope: 'col' }, unit))),
    h('tbody', {},
      series.flatMap((serie) => serie.points.map((p) => h('tr', {},
        h('td', {}, serie.label), h('td', {}, fmtDate(p.start)), h('td', {}, p.end ? fmtDate(p.end) : L('heden', 'now')),
        h('td', {}, fmtNumber(p.value))))),
      bands.map((b) => h('tr', {}, h('td', {}, b.label), h('td', {}, fmtDate(b.start)),
        h('td', {}, b.end ? fmtDate(b.end) : L('heden', 'now')), h('td', {}, b.value === undefined ? '' : `${fmtNumber(b.value)} %`)))));
  const fig = figure(title, description, svg, table);
  fig.insertBefore(legend, fig.querySelector('details'));
  return fig;
}

/** Horizontal bars per category; series: [{label, cls, values: [number|null per category]}]. */
export function barChart({ title, description, categories, series, max, valueLabel }) {
  const W = width();
  const rowH = 18 * series.length + 14;
  const left = Math.round(W * 0.42);
  const fits = Math.floor(left / 6.6);
  const height = PAD.top + categories.length * rowH + 28;
  const x = (v) => left + (v / max) * (W - left - PAD.right);
  const svg = s('svg', { viewBox: `0 0 ${W} ${height}`, class: 'chart-svg', focusable: 'false' });
  for (let v = 0; v <= max; v += 1) {
    svg.append(s('line', { x1: x(v), x2: x(v), y1: PAD.top, y2: height - 24, class: 'grid' }),
      s('text', { x: x(v), y: height - 8, class: 'axis-label', 'text-anchor': 'middle' }, String(v)));
  }
  categories.forEach((category, i) => {
    const top = PAD.top + i * rowH;
    const short = category.length > fits ? `${category.slice(0, fits - 1)}…` : category;
    svg.append(s('text', { x: left - 8, y: top + rowH / 2 + 2, class: 'axis-label', 'text-anchor': 'end' }, short, s('title', {}, category)));
    series.forEach((serie, j) => {
      const v = serie.values[i];
      if (v === null || v === undefined) return;
      svg.append(s('rect', { x: left, y: top + 4 + j * 18, width: Math.max(2, x(v) - left), height: 14, class: `bar ${serie.cls}` },
        s('title', {}, `${category} — ${serie.label}: ${valueLabel(v)}`)));
    });
  });
  const legend = h('ul', { class: 'legend' },
    series.map((serie) => h('li', {}, h('span', { class: `swatch ${serie.cls}`, 'aria-hidden': 'true' }), serie.label)));
  const table = h('table', {},
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, L('Onderdeel', 'Category')),
      series.map((serie) => h('th', { scope: 'col' }, serie.label)))),
    h('tbody', {}, categories.map((category, i) => h('tr', {}, h('th', { scope: 'row' }, category),
      series.map((serie) => h('td', {}, serie.values[i] === null || serie.values[i] === undefined ? '—' : valueLabel(serie.values[i])))))));
  const fig = figure(title, description, svg, table);
  fig.insertBefore(legend, fig.querySelector('details'));
  return fig;
}

export { DAY };
