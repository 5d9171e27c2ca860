// Transactions: the get_transactions CSV, filtered by user, EVSE and period, and downloaded.

import { cnf, isAdmin, session } from './api.js';
import { download, duration, fill, h, kwh } from './dom.js';
import { t, when } from './i18n.js';

let rows = [];
let header = [];

/** RFC 4180 fields (quoted cells may hold commas, quotes and line ends). */
export function parseCsv(text) {
  const out = [];
  let row = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { cell += '"'; i += 1; } else if (c === '"') quoted = false;
      else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') { row.push(cell); cell = ''; }
    else if (c === '\n') { row.push(cell.replace(/\r$/, '')); out.push(row); row = []; cell = ''; }
    else cell += c;
  }
  if (cell !== '' || row.length) { row.push(cell.replace(/\r$/, '')); out.push(row); }
  return out;
}

function csvCell(value) {
  return /[",\r\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

export async function enter(main) {
  const text = await cnf('get_transactions', isAdmin() ? {} : { user_id: session.user.id });
  const table = parseCsv(text);
  header = table[0] || [];
  rows = table.slice(1).map((r) => Object.fromEntries(header.map((k, i) => [k, r[i] ?? ''])));
  const users = [...new Set(rows.map((r) => r.user_name || r.user_id).filter(Boolean))].sort();
  const evses = [...new Set(rows.map((r) => r.dev_id))].sort();
  const select = (id, values) => h('select', { id }, h('option', { value: '' }, t('tx_all')),
    values.map((v) => h('option', { value: v }, v)));
  const user = select('tx-user', users);
  const evse = select('tx-evse', evses);
  const from = h('input', { id: 'tx-from', type: 'date' });
  const to = h('input', { id: 'tx-to', type: 'date' });
  const out = h('div', { id: 'tx-table' });
  const filtered = () => rows.filter((r) => (!user.value || (r.user_name || r.user_id) === user.value)
    && (!evse.value || r.dev_id === evse.value)
    && (!from.value || r.start.slice(0, 10) >= from.value)
    && (!to.value || r.start.slice(0, 10) <= to.value));
  const render = () => {
    const list = filtered();
    const energy = list.reduce((s, r) => s + Number(r.energy_wh || 0), 0);
    fill(out, h('p', { id: 'tx-count' }, t('tx_count', { n: list.length, e: kwh(energy) })),
      h('div', { class: 'table-wrap' }, h('table', {},
        h('thead', {}, h('tr', {}, ['#', t('tx_evse'), t('tx_user'), t('start'), t('end'), t('duration'), t('energy')].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, list.map((r) => h('tr', {},
          h('td', {}, r.id), h('td', {}, r.dev_id), h('td', {}, r.user_name || r.user_id || '—'),
          h('td', {}, when(Date.parse(r.start) / 1000)), h('td', {}, r.end ? when(Date.parse(r.end) / 1000) : t('running')),
          h('td', {}, duration(Number(r.duration_s))), h('td', { class: 'num' }, kwh(r.energy_wh))))))));
  };
  const save = () => {
    const lines = [header.join(','), ...filtered().map((r) => header.map((k) => csvCell(r[k])).join(','))];
    download('transactions.csv', `${lines.join('\r\n')}\r\n`, 'text/csv');
  };
  for (const el of [user, evse, from, to]) el.addEventListener('change', render);
  fill(main, h('h1', {}, t('tx')),
    h('form', { class: 'filters', onsubmit: (ev) => ev.preventDefault() },
      h('div', { class: 'field' }, h('label', { for: 'tx-user' }, t('tx_user')), user),
      h('div', { class: 'field' }, h('label', { for: 'tx-evse' }, t('tx_evse')), evse),
      h('div', { class: 'field' }, h('label', { for: 'tx-from' }, t('tx_from')), from),
      h('div', { class: 'field' }, h('label', { for: 'tx-to' }, t('tx_to')), to),
      h('button', { type: 'button', id: 'tx-csv', onclick: save }, t('tx_csv'))),
    out);
  render();
}
