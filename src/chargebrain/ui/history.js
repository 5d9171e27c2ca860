// History: recorded power of the site and the devices (get_history), charted with uPlot.
// Drag across the chart to zoom in (finer values are fetched), pick the series to show.

import uPlot from './vendor/uPlot.esm.js';
import { cnf } from './api.js';
import { fill, h, uid } from './dom.js';
import { t } from './i18n.js';

const RANGES = [['h_1h', 3600], ['h_6h', 6 * 3600], ['h_24h', 86400], ['h_7d', 7 * 86400], ['h_30d', 30 * 86400]];
const COLORS = ['#0b6e99', '#b35900', '#2e7d32', '#8e24aa', '#c62828', '#00838f', '#6d4c41', '#3949ab', '#9e9d24', '#d81b60'];
const DEFAULT = ['grid', 'pv', 'house', 'evse'];

let chart = null;
let chosen = new Set(DEFAULT);
let span = 3600;
let view = null; // [from, to] while zoomed
let onResize = null;

export async function enter(main) {
  view = null;
  const rangeBox = h('div', { class: 'buttons', role: 'group', 'aria-label': t('h_range') },
    RANGES.map(([key, secs]) => h('button', { type: 'button', class: secs === span ? 'small' : 'small secondary',
      'aria-pressed': String(secs === span), dataset: { span: String(secs) },
      onclick: () => { span = secs; view = null; update(); } }, t(key))));
  fill(main, h('h1', {}, t('history')), rangeBox,
    h('fieldset', { id: 'h-series' }, h('legend', {}, t('h_series'))),
    h('p', { class: 'help' }, t('h_hint')), h('p', { id: 'h-step', role: 'status' }),
    h('div', { id: 'h-chart', class: 'chart' }));
  onResize = () => { if (chart) chart.setSize(size()); };
  window.addEventListener('resize', onResize);
  await update();
}

export function leave() {
  if (chart) chart.destroy();
  chart = null;
  if (onResize) window.removeEventListener('resize', onResize);
}

function size() {
  const box = document.getElementById('h-chart');
  const width = Math.max(280, (box ? box.clientWidth : 600) - 4);
  return { width, height: Math.round(Math.min(420, Math.max(240, width * 0.5))) };
}

async function update() {
  const to = view ? view[1] : Math.floor(Date.now() / 1000);
  const from = view ? view[0] : to - span;
  const data = await cnf('get_history', { from, to, series: [...chosen].join(','), points: 600 });
  for (const b of document.querySelectorAll('[data-span]')) {
    const on = Number(b.dataset.span) === span && !view;
    b.className = on ? 'small' : 'small secondary';
    b.setAttribute('aria-pressed', String(on));
  }
  pickers(data.available);
  const step = data.step >= 60 ? `${data.step / 60} min` : `${data.step} s`;
  document.getElementById('h-step').textContent = t('h_step', { s: step });
  draw(data, from, to);
}

function label(item) {
  return ['grid', 'pv', 'house', 'evse', 'storage'].includes(item.id)
    ? t(item.id === 'evse' ? 'evses' : item.id) : `${item.id} ${item.name}`;
}

function pickers(available) {
  const box = document.getElementById('h-series');
  if (!box) return;
  fill(box, h('legend', {}, t('h_series')), available.map((item) => {
    const id = uid('s');
    const input = h('input', { id, type: 'checkbox', value: item.id, checked: chosen.has(item.id) });
    input.addEventListener('change', () => {
      if (input.checked) chosen.add(item.id); else chosen.delete(item.id);
      update();
    });
    return h('span', { class: 'check inline-check' }, input, h('label', { for: id }, label(item)));
  }));
}

function draw(data, from, to) {
  const box = document.getElementById('h-chart');
  if (!box) return;
  const times = [...new Set(data.series.flatMap((s) => s.t))].sort((a, b) => a - b);
  const index = new Map(times.map((x, i) => [x, i]));
  const columns = data.series.map((s) => {
    const col = new Array(times.length).fill(null);
    s.t.forEach((x, i) => { col[index.get(x)] = s.power_w[i]; });
    return col;
  });
  const names = new Map(data.available.map((a) => [a.id, a]));
  const opts = {
    ...size(),
    scales: { x: { time: true, min: from, max: to } },
    series: [{}, ...data.series.map((s, i) => ({
      label: label(names.get(s.id) || { id: s.id, name: s.name }), stroke: COLORS[i % COLORS.length], width: 1.5,
      value: (u, v) => (v === null || v === undefined ? '—' : `${Math.round(v)} W`), spanGaps: false }))],
    axes: [{}, { values: (u, vals) => vals.map((v) => (Math.abs(v) >= 1000 ? `${v / 1000} kW` : `${v} W`)), size: 60 }],
    cursor: { drag: { x: true, y: false } },
    hooks: {
      setSelect: [(u) => {
        if (u.select.width < 5) return;
        const a = Math.floor(u.posToVal(u.select.left, 'x'));
        const b = Math.ceil(u.posToVal(u.select.left + u.select.width, 'x'));
        view = [a, b];
        update();
      }],
    },
  };
  if (chart) chart.destroy();
  fill(box);
  if (!times.length) box.append(h('p', {}, t('h_none')));
  chart = new uPlot(opts, [times, ...columns], box);
  chart.over.addEventListener('dblclick', () => { view = null; update(); });
}
