// Charging rules of an EVSE or a user: edited row by row, checked by the server as they are
// typed (check_rules, the validation set_device and set_user apply), then saved.

import { cnf, isAdmin, saveSession, session } from './api.js';
import { fill, h, toast, uid } from './dom.js';
import { t } from './i18n.js';

let targets = [];
let timer = null;

export async function enter(main) {
  targets = [];
  if (isAdmin()) {
    const [devs, users] = await Promise.all([cnf('get_devices'), cnf('get_users')]);
    for (const d of devs.filter((x) => x.dev_type.startsWith('evse') && x.dev_type !== 'evse_group')) {
      targets.push({ key: `E:${d.dev_id}`, label: t('rules_evse', { name: `${d.dev_id} ${d.name}` }),
                     rules: d.charging_rules || [], save: (rules) => cnf('set_device', {}, { devices: [{ dev_id: d.dev_id, charging_rules: rules }] }) });
    }
    for (const u of users) {
      targets.push({ key: `U:${u.id}`, label: t('rules_user', { name: u.name || u.id }),
                     rules: u.charging_rules || [], save: (rules) => cnf('set_user', {}, { id: u.id, charging_rules: rules }) });
    }
  } else {
    const me = await cnf('get_user', { id: session.user.id });
    targets.push({ key: `U:${me.id}`, label: t('rules_user', { name: me.name || me.id }), rules: me.charging_rules || [],
                   save: async (rules) => { session.user = await cnf('set_user', {}, { id: me.id, charging_rules: rules }); saveSession(); } });
  }
  const pick = h('select', { id: 'rules-target' }, targets.map((x) => h('option', { value: x.key }, x.label)));
  const area = h('div', { id: 'rules-area' });
  pick.addEventListener('change', () => edit(area, targets.find((x) => x.key === pick.value)));
  fill(main, h('h1', {}, t('rules')),
    h('div', { class: 'inline' }, h('label', { for: 'rules-target' }, t('rules_for')), pick), area);
  if (targets.length) edit(area, targets[0]);
}

const DAYS = 7;

function ruleRow(rule, list, onChange) {
  const n = () => [...list.children].indexOf(el) + 1;
  const id = (name) => uid(name);
  const ids = { on: id('on'), time: id('time'), dur: id('dur'), mode: id('mode'), cur: id('cur'), expr: id('expr'), solar: id('solar'), udur: id('udur') };
  const days = t('days_short').split(',');
  const minutes = Number(rule.time || 0);
  const hhmm = `${String(Math.floor(minutes / 60)).padStart(2, '0')}:${String(minutes % 60).padStart(2, '0')}`;
  const dayBoxes = days.map((d, i) => {
    const bid = uid('day');
    return h('span', { class: 'day' }, h('input', { id: bid, type: 'checkbox', class: 'r-day', value: String(i),
      checked: Boolean(Number(rule.days || 0) & (1 << i)) }), h('label', { for: bid }, d));
  });
  const el = h('fieldset', { class: 'rule' },
    h('legend', { class: 'rule-title' }),
    h('div', { class: 'check' }, h('input', { id: ids.on, type: 'checkbox', class: 'r-on', checked: rule.enabled !== false && rule.enabled !== 0 }),
      h('label', { for: ids.on }, t('r_enabled'))),
    h('div', { class: 'days', role: 'group', 'aria-label': t('r_days') }, dayBoxes),
    h('div', { class: 'grid' },
      h('div', { class: 'field' }, h('label', { for: ids.time }, t('r_from')), h('input', { id: ids.time, type: 'time', class: 'r-time', value: hhmm })),
      h('div', { class: 'field' }, h('label', { for: ids.dur }, t('r_dur')), h('input', { id: ids.dur, type: 'number', min: 0, max: 1440, class: 'r-dur', value: String(rule.dur || 0) })),
      h('div', { class: 'field' }, h('label', { for: ids.mode }, t('r_mode')),
        h('select', { id: ids.mode, class: 'r-mode' }, [0, 1, 2, 3, 4, 5].map((m) => h('option', { value: String(m), selected: Number(rule.mode || 0) === m }, t(`m${m}`))))),
      h('div', { class: 'field' }, h('label', { for: ids.cur }, t('r_current')), h('input', { id: ids.cur, type: 'number', class: 'r-cur', value: String(rule.current ?? 0) })),
      h('div', { class: 'field' }, h('label', { for: ids.solar }, t('r_solar')), h('input', { id: ids.solar, type: 'number', min: 0, class: 'r-solar', value: String(rule.solar || 0) })),
      h('div', { class: 'field' }, h('label', { for: ids.udur }, t('r_udur')), h('input', { id: ids.udur, type: 'number', min: 0, class: 'r-udur', value: String(rule.udur || 0) }))),
    h('div', { class: 'field wide' }, h('label', { for: ids.expr }, t('r_expr')),
      h('input', { id: ids.expr, class: 'r-expr', value: rule.expr || '', spellcheck: 'false', autocomplete: 'off', 'aria-describedby': `${ids.expr}-err` }),
      h('span', { class: 'field-error', id: `${ids.expr}-err`, role: 'alert' })),
    h('div', { class: 'buttons' },
      h('button', { type: 'button', class: 'small secondary', onclick: () => { el.previousElementSibling?.before(el); onChange(); } }, t('up')),
      h('button', { type: 'button', class: 'small secondary', onclick: () => { el.nextElementSibling?.after(el); onChange(); } }, t('down')),
      h('button', { type: 'button', class: 'small danger', onclick: () => { el.remove(); onChange(); } }, t('remove'))));
  el.rule = rule;
  el.number = n;
  el.addEventListener('input', onChange);
  el.addEventListener('change', onChange);
  list.append(el);
}

function collect(list) {
  return [...list.children].map((el) => {
    const q = (c) => el.querySelector(c);
    const [hh, mm] = (q('.r-time').value || '00:00').split(':').map(Number);
    const days = [...el.querySelectorAll('.r-day:checked')].reduce((s, b) => s | (1 << Number(b.value)), 0);
    const rule = { ...el.rule, enabled: q('.r-on').checked, days, time: hh * 60 + mm,
      dur: Number(q('.r-dur').value || 0), mode: Number(q('.r-mode').value),
      current: Number(q('.r-cur').value || 0), solar: Number(q('.r-solar').value || 0),
      udur: Number(q('.r-udur').value || 0), expr: q('.r-expr').value };
    return rule;
  });
}

function edit(area, target) {
  const list = h('div', { class: 'rules' });
  const status = h('p', { id: 'rules-status', role: 'status' });
  const msg = h('p', { class: 'error', role: 'alert' });
  const check = () => {
    clearTimeout(timer);
    timer = setTimeout(() => validate(list, status), 250);
  };
  for (const rule of target.rules) ruleRow(rule, list, check);
  async function save(ev) {
    ev.preventDefault();
    msg.textContent = '';
    try {
      await target.save(collect(list));
      target.rules = collect(list);
      toast(t('saved'));
    } catch (e) { msg.textContent = e.message; }
  }
  fill(area, h('form', { onsubmit: save }, list,
    h('button', { type: 'button', class: 'secondary', id: 'add-rule',
      onclick: () => { ruleRow({ enabled: true, mode: 0, current: 16000, days: 0, time: 0, dur: 0 }, list, check); check(); } }, t('add_rule')),
    status, msg,
    h('div', { class: 'buttons' }, h('button', { type: 'submit', id: 'rules-save' }, t('save')))));
  numbers(list);
  validate(list, status);
}

function numbers(list) {
  [...list.children].forEach((el, i) => { el.querySelector('legend').textContent = t('rule', { n: i + 1 }); });
}

async function validate(list, status) {
  numbers(list);
  const rules = collect(list);
  let answer;
  try { answer = await cnf('check_rules', {}, rules); } catch (e) { status.textContent = e.message; return; }
  for (const el of list.children) {
    el.classList.remove('invalid');
    el.querySelector('.field-error').textContent = '';
    el.querySelector('.r-expr').removeAttribute('aria-invalid');
  }
  const general = [];
  for (const error of answer.errors) {
    const m = /^rule (\d+): (.*)$/.exec(error);
    const el = m && list.children[Number(m[1]) - 1];
    if (el) {
      el.classList.add('invalid');
      const span = el.querySelector('.field-error');
      span.textContent = span.textContent ? `${span.textContent}; ${m[2]}` : m[2];
      if (/expr/.test(m[2])) el.querySelector('.r-expr').setAttribute('aria-invalid', 'true');
    } else general.push(error);
  }
  status.textContent = answer.ok ? t('rule_ok') : general.join('; ');
  status.className = answer.ok ? 'ok' : 'error';
}
