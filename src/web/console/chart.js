// A grouped bar chart drawn as SVG by this code (createElementNS and setAttribute only: geometry
// and classes are attributes, colours come from the stylesheet, nothing is a style attribute, so
// the production CSP needs no exception). Every bar carries its numbers as data attributes and a
// <title>; the same numbers are in a table next to the chart for screen readers and for reading.

import { h, nextId, num } from './core.js';

const SVG = 'http://www.w3.org/2000/svg';

/** An SVG element with attributes (strings) and children. */
function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs ?? {})) if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

/** A round upper bound for the axis and its step (whole numbers): 3 → 3 (step 1), 7 → 8 (2), 130 → 150 (50)… */
export function axisScale(max) {
  if (!(max > 0)) return { top: 4, step: 1 };
  const rough = max / 4;
  const mag = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((st) => st >= rough && Number.isInteger(st)) ?? Math.ceil(rough);
  const stepInt = Math.max(1, Math.ceil(step));
  return { top: Math.ceil(max / stepInt) * stepInt, step: stepInt };
}

const HOUR = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const HOUR_ZONE = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', timeZoneName: 'short' });
const DAY_HOUR = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
/** The browser's short time zone name ("UTC", "CET"). */
export const zoneName = () => HOUR_ZONE.formatToParts(new Date()).find((p) => p.type === 'timeZoneName')?.value ?? '';

/** "06:00–07:00" for a bucket starting at `at`, `secs` long (the date too when it is not today). */
export function bucketLabel(at, secs) {
  const start = new Date(at);
  const end = new Date(start.getTime() + secs * 1000);
  const today = start.toDateString() === new Date().toDateString();
  return `${today ? HOUR.format(start) : DAY_HOUR.format(start)}–${HOUR_ZONE.format(end)}`;
}

/**
 * `buckets`: [{at, <key>: n, …}] oldest first; `series`: [{key, label}]; `width`: the pixels the
 * chart has (its SVG units are pixels, so that the text stays readable on a phone). Returns a
 * <figure> with the SVG (role img, labelled by its title and a summary), a legend and a table of
 * the numbers.
 */
export function barChart({ id, title, summary, buckets, series, bucketSecs, width = 760 }) {
  const W = Math.max(280, Math.round(width));
  const H = W < 500 ? 240 : 280;
  const m = { left: 44, right: 12, top: 14, bottom: 44 };
  const plotW = W - m.left - m.right;
  const plotH = H - m.top - m.bottom;
  const max = Math.max(0, ...buckets.flatMap((b) => series.map((se) => Number(b[se.key]) || 0)));
  const { top, step } = axisScale(max);
  const y = (v) => m.top + plotH - (v / top) * plotH;
  const slot = plotW / Math.max(1, buckets.length);
  const barW = Math.max(1, (slot * 0.8) / series.length);
  const titleId = nextId('chart-title');
  const descId = nextId('chart-desc');

  const grid = [];
  for (let v = 0; v <= top; v += step) {
    grid.push(
      s('line', { class: v === 0 ? 'chart-axis' : 'chart-grid', x1: m.left, x2: W - m.right, y1: y(v), y2: y(v) }),
      s('text', { class: 'chart-tick', x: m.left - 6, y: y(v) + 4, 'text-anchor': 'end' }, num(v)),
    );
  }
  // As many hour labels as fit (about 64 px each).
  const every = Math.max(1, Math.ceil(buckets.length / Math.max(2, Math.floor(plotW / 64))));
  const groups = buckets.map((b, i) => {
    const x0 = m.left + i * slot + slot * 0.1;
    const label = bucketLabel(b.at, bucketSecs);
    return s(
      'g',
      { class: 'chart-bucket', 'data-at': b.at },
      series.map((se, k) => {
        const v = Number(b[se.key]) || 0;
        return s(
          'rect',
          { class: `chart-bar bar-${se.key}`, x: (x0 + k * barW).toFixed(2), y: y(v).toFixed(2), width: Math.max(0.5, barW - 1).toFixed(2), height: Math.max(0, m.top + plotH - y(v)).toFixed(2), 'data-series': se.key, 'data-value': v, 'data-at': b.at },
          s('title', null, `${label}: ${num(v)} ${se.label.toLowerCase()}`),
        );
      }),
      i % every === 0 ? s('text', { class: 'chart-tick', x: (m.left + i * slot + slot / 2).toFixed(2), y: H - m.bottom + 16, 'text-anchor': 'middle' }, HOUR.format(new Date(b.at))) : null,
    );
  });
  const svg = s(
    'svg',
    { class: 'chart-svg', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': `${titleId} ${descId}`, preserveAspectRatio: 'xMidYMid meet', id: id ? `${id}-svg` : null, 'data-max': max },
    s('title', { id: titleId }, title),
    s('desc', { id: descId }, summary),
    grid,
    groups,
    s('text', { class: 'chart-axis-title', x: m.left + plotW / 2, y: H - 6, 'text-anchor': 'middle' }, `Start of each ${bucketSecs === 3600 ? 'hour' : `${Math.round(bucketSecs / 60)}-minute period`} (${zoneName()})`),
    s('text', { class: 'chart-axis-title', x: 12, y: m.top + plotH / 2, 'text-anchor': 'middle', transform: `rotate(-90 12 ${m.top + plotH / 2})` }, 'Jobs'),
  );

  const legend = h(
    'ul',
    { class: 'chart-legend', 'aria-label': 'Legend' },
    series.map((se) => h('li', null, h('span', { class: `swatch bar-${se.key}`, 'aria-hidden': 'true' }), se.label)),
  );
  const totals = Object.fromEntries(series.map((se) => [se.key, buckets.reduce((a, b) => a + (Number(b[se.key]) || 0), 0)]));
  const tableEl = h(
    'div',
    { class: 'table-wrap chart-table-wrap' },
    h(
      'table',
      { class: 'chart-table', id: id ? `${id}-table` : null },
      h('caption', null, `${title}: the numbers`),
      h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Period'), series.map((se) => h('th', { scope: 'col', class: 'num' }, se.label)))),
      h(
        'tbody',
        null,
        buckets.map((b) =>
          h(
            'tr',
            { 'data-at': b.at },
            h('th', { scope: 'row' }, bucketLabel(b.at, bucketSecs)),
            series.map((se) => h('td', { class: 'num', 'data-series': se.key, 'data-value': String(Number(b[se.key]) || 0) }, num(b[se.key] ?? 0))),
          ),
        ),
      ),
      h('tfoot', null, h('tr', null, h('th', { scope: 'row' }, 'Total'), series.map((se) => h('td', { class: 'num', 'data-total': se.key }, num(totals[se.key]))))),
    ),
  );
  return h(
    'figure',
    { class: 'chart', id },
    h('div', { class: 'chart-frame' }, svg),
    h('figcaption', null, legend, h('p', { class: 'muted chart-summary' }, summary)),
    h('details', { class: 'chart-details' }, h('summary', null, 'The numbers as a table'), tableEl),
  );
}
