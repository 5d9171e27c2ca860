// The overview: the site's power as bars, a tile per device, updated live from /events.

import { cnf, isAdmin, isUser, listen, mayControl, session } from './api.js';
import { amps, duration, fill, h, kw, kwh, toast } from './dom.js';
import { t } from './i18n.js';

let abort = null;
let last = null;
let openDialog = null;

const ROLE_STORAGE = [5, 6];
const ROLES = ['display', 'consumption', 'production', 'grid', 'vehicle', 'storage (home)', 'storage'];

export async function enter(main) {
  const status = h('span', { class: 'badge', id: 'live-state' }, t('offline'));
  fill(main,
    h('div', { class: 'title-row' }, h('h1', {}, t('nav_dashboard')), status),
    h('section', { id: 'summary', class: 'summary', 'aria-label': t('mode') }),
    h('section', { 'aria-labelledby': 'flow-h' },
      h('h2', { id: 'flow-h' }, t('site_flow')), h('div', { id: 'flow', class: 'flow' })),
    h('section', { 'aria-labelledby': 'tiles-h' },
      h('h2', { id: 'tiles-h' }, t('devices')), h('div', { id: 'tiles', class: 'tiles' })));
  if (last) render(last);
  abort = new AbortController();
  listen('/events', (name, data) => { if (name === 'devinfo') render(data); }, abort.signal,
    (up) => {
      status.textContent = up ? t('live') : t('offline');
      status.className = up ? 'badge ok' : 'badge';
    });
}

export function leave() {
  if (abort) abort.abort();
  abort = null;
}

function render(info) {
  last = info;
  const summary = document.getElementById('summary');
  if (!summary) return;
  const p = info.params;
  fill(summary,
    fact(t('mode'), info.loadmgr_disabled ? t('mode_observe') : t('mode_lm'), 'mode'),
    fact(t('cycle_time'), `${p.cycle_time} ms`, 'cycle'),
    fact(t('connection'), typeof p.max_total_current === 'number'
      ? `${amps(p.max_total_current)} A` : String(p.max_total_current), 'conn'),
    fact(t('devices'), String(info.devices.length), 'count'));
  renderFlow(info);
  const tiles = document.getElementById('tiles');
  const devices = orderFor(info.devices);
  fill(tiles, devices.map(tile));
  if (openDialog && openDialog.refresh) openDialog.refresh(info);
}

function orderFor(devices) {
  if (!isUser()) return devices;
  const mine = devices.filter((d) => d.is_evse && mayControl(d.dev_id));
  return [...mine, ...devices.filter((d) => !mine.includes(d))];
}

function fact(label, value, key) {
  return h('div', { class: 'fact', dataset: { key } }, h('span', { class: 'k' }, label),
    h('strong', {}, value));
}

function renderFlow(info) {
  const p = info.params;
  const storage = info.devices.filter((d) => !d.is_evse && ROLE_STORAGE.includes(d.role))
    .reduce((sum, d) => sum + (d.power_w || 0), 0);
  const rows = [
    ['grid', t('grid'), p.grid_pwr, p.grid_pwr < 0 ? t('export') : t('import')],
    ['pv', t('pv'), p.prod_pwr, ''],
    ['house', t('house'), p.cons_pwr || Math.max(0, p.grid_pwr + p.prod_pwr - p.cons_evse_power - storage), ''],
    ['storage', t('storage'), storage, ''],
    ['evse', t('evses'), p.cons_evse_power, ''],
  ];
  const top = Math.max(1000, ...rows.map((r) => Math.abs(r[2] || 0)));
  fill(document.getElementById('flow'), rows.map(([key, label, watts, note]) => {
    const bar = h('div', { class: `bar ${key}${watts < 0 ? ' neg' : ''}` });
    bar.style.width = `${Math.round((Math.abs(watts || 0) / top) * 100)}%`;
    return h('div', { class: 'flow-row', dataset: { key } },
      h('span', { class: 'flow-label' }, label),
      h('div', { class: 'track', role: 'presentation' }, bar),
      h('span', { class: 'flow-value' }, kw(watts), note ? ` ${note}` : ''));
  }));
}

function row(label, value) {
  return [h('dt', {}, label), h('dd', {}, value)];
}

function tile(d) {
  const err = d.com_err;
  const classes = ['tile', d.is_evse ? 'evse' : 'meter'];
  if (err) classes.push('com-err');
  if (!d.device_enabled) classes.push('off');
  const rows = [];
  if (d.dev_type === 'evse_group') {
    rows.push(row(t('currents'), `${amps(d.current_l1)} / ${amps(d.current_l2)} / ${amps(d.current_l3)} A`));
  } else if (d.is_evse) {
    const state = err ? 6 : d.state;
    rows.push(row(t('state'), t(`st${state}`) + (d.paused ? ` (${t('paused')})` : '')));
    rows.push(row(t('set_current'), `${amps(d.evse ? d.evse.current : 0)} A`));
    rows.push(row(t('actual_current'), `${amps(d.current_l1)} / ${amps(d.current_l2)} / ${amps(d.current_l3)} A`));
    rows.push(row(t('phases'), phaseText(d.phases)));
    rows.push(row(t('power'), kw(d.power_w)));
    rows.push(row(t('energy'), `${kwh(d.total_energy)} (${t('session_energy')}: ${kwh(d.ta_en)})`));
    if (d.user) rows.push(row(t('user'), d.user));
    rows.push(row(t('reason'), d.reason || '—'));
  } else {
    rows.push(row(t('power'), kw(d.power_w)));
    rows.push(row(t('currents'), `${amps(d.current_l1)} / ${amps(d.current_l2)} / ${amps(d.current_l3)} A`));
    rows.push(row(t('energy'), `${kwh(d.import)} ${t('import')}, ${kwh(d.export)} ${t('export')}`));
    rows.push(row(t('role'), ROLES[d.role] || String(d.role)));
  }
  const head = h('div', { class: 'tile-head' },
    h('h3', {}, h('span', { class: 'dev-id' }, d.dev_id), ' ', d.name),
    !d.device_enabled ? h('span', { class: 'badge' }, t('disabled')) : null);
  const out = h('article', { class: classes.join(' '), dataset: { dev: d.dev_id },
                             'aria-label': `${d.dev_id} ${d.name}` },
    head, h('dl', {}, rows));
  if (err) {
    out.append(h('p', { class: 'err-line', role: 'note' },
      h('span', { class: 'err-icon', 'aria-hidden': 'true' }, '⚠'), ' ',
      t('com_error', { t: duration(d.com_err_secs) }), d.last_error ? `: ${d.last_error}` : ''));
  }
  if (d.is_evse && d.dev_type !== 'evse_group' && mayControl(d.dev_id)) {
    out.append(h('button', { type: 'button', class: 'small', onclick: () => control(d.dev_id) },
      t('control')));
  }
  return out;
}

function phaseText(mask) {
  const names = ['L1', 'L2', 'L3'].filter((_, i) => mask & (1 << i));
  return names.length ? names.join(' ') : '—';
}

function find(devId) {
  return last ? last.devices.find((d) => d.dev_id === devId) : null;
}

async function override(devId, params, rfidInput) {
  const query = { dev_id: devId, ...params };
  if (!isAdmin()) query.rfid = rfidInput.value.trim() || session.rfid || '';
  const answer = await cnf('override_device', query);
  toast(t('ov_done'));
  return answer;
}

async function setDevice(devId, changes) {
  await cnf('set_device', {}, { devices: [{ dev_id: devId, ...changes }] });
  toast(t('saved'));
}

function control(devId) {
  const dialog = document.getElementById('dialog');
  const d = find(devId);
  if (!d) return;
  const msg = h('p', { class: 'error', role: 'alert' });
  const guard = (fn) => async (ev) => {
    if (ev) ev.preventDefault();
    msg.textContent = '';
    try { await fn(); } catch (e) { msg.textContent = e.message; }
  };
  const rfid = h('input', { id: 'ov-rfid', type: 'password', autocomplete: 'off',
                            value: session.rfid || '' });
  const limit = h('input', { id: 'ov-limit', type: 'number', min: amps(d.min_charging_cur),
    max: 1000, step: '0.1', value: d.ov_cur ? amps(d.ov_cur) : amps(d.max_charging_cur) });
  const active = h('p', { id: 'ov-active' });
  const flags = (d.overrides || 0);
  const evseRules = h('input', { id: 'ov-e', type: 'checkbox', checked: Boolean(flags & 2),
    disabled: !isAdmin() });
  const userRules = h('input', { id: 'ov-u', type: 'checkbox', checked: Boolean(flags & 4) });
  const chargeBtn = h('button', { type: 'button', id: 'ov-charge' });
  const parts = [
    h('h2', { id: 'dialog-title' }, t('ov_title', { name: d.name })),
    !isAdmin() ? h('div', { class: 'stack' }, h('label', { for: 'ov-rfid' }, t('ov_rfid')), rfid) : null,
    h('form', { class: 'stack', onsubmit: guard(() => override(devId,
      { mamps: Math.round(Number(limit.value) * 1000) }, rfid)) },
    h('label', { for: 'ov-limit' }, t('ov_limit')), limit,
    h('div', { class: 'buttons' }, h('button', { type: 'submit', id: 'ov-set' }, t('ov_set')),
      h('button', { type: 'button', class: 'secondary',
        onclick: guard(() => override(devId, { mamps: 0 }, rfid)) }, t('ov_clear')))),
    active,
    h('fieldset', {}, h('legend', {}, t('ov_charging')), chargeBtn,
      h('div', { class: 'check' }, evseRules, h('label', { for: 'ov-e' }, t('ov_evse_rules'))),
      h('div', { class: 'check' }, userRules, h('label', { for: 'ov-u' }, t('ov_user_rules')))),
  ];
  evseRules.addEventListener('change', guard(() => override(devId, { flags: evseRules.checked ? 'E' : 'e' }, rfid)));
  userRules.addEventListener('change', guard(() => override(devId, { flags: userRules.checked ? 'U' : 'u' }, rfid)));
  chargeBtn.addEventListener('click', guard(() => {
    const now = find(devId);
    const disabled = now && (now.overrides & 1);
    return override(devId, { flags: disabled ? 'c' : 'C' }, rfid);
  }));
  if (isAdmin()) {
    const enabled = h('input', { id: 'ov-enabled', type: 'checkbox', checked: Boolean(d.device_enabled) });
    enabled.addEventListener('change', guard(() => setDevice(devId, { device_enabled: enabled.checked })));
    const phases = h('select', { id: 'ov-phases' },
      [[0, 'ph_auto'], [1, 'ph_1'], [7, 'ph_3']].map(([v, k]) =>
        h('option', { value: String(v), selected: d.used_phases === v }, t(k))));
    phases.addEventListener('change', guard(() => setDevice(devId, { used_phases: Number(phases.value) })));
    const wake = h('input', { id: 'ov-wake', type: 'checkbox' });
    cnf('get_devices').then((all) => {
      const cfg = (all.devices || all).find((x) => x.dev_id === devId);
      if (cfg) wake.checked = Boolean(cfg.enable_wakeup);
    }).catch(() => {});
    wake.addEventListener('change', guard(() => setDevice(devId, { enable_wakeup: wake.checked })));
    parts.push(h('fieldset', {}, h('legend', {}, t('nav_config')),
      h('div', { class: 'check' }, enabled, h('label', { for: 'ov-enabled' }, t('dev_enabled'))),
      h('label', { for: 'ov-phases' }, t('dev_phases')), phases,
      h('div', { class: 'check' }, wake, h('label', { for: 'ov-wake' }, t('wakeup')))));
  }
  parts.push(msg, h('button', { type: 'button', class: 'secondary', onclick: () => dialog.close() }, t('close')));
  fill(dialog, ...parts);
  const refresh = (info) => {
    const now = info.devices.find((x) => x.dev_id === devId);
    if (!now) return;
    chargeBtn.textContent = (now.overrides & 1) ? t('ov_enable') : t('ov_disable');
    active.textContent = now.ov_cur ? t('ov_active', { a: amps(now.ov_cur) }) : '';
  };
  refresh(last);
  openDialog = { refresh };
  dialog.addEventListener('close', () => { openDialog = null; }, { once: true });
  dialog.showModal();
}
