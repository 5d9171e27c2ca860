// The Modbus test (admin): read or write any device's registers with modbus_get /
// modbus_set, to try a wallbox or meter before writing its definition.

import { cnf } from './api.js';
import { fill, h } from './dom.js';
import { t } from './i18n.js';

const TYPES = ['w', 'd', 'f', 'q', 's'];

function field(id, label, input) {
  input.id = id;
  return h('div', { class: 'field' }, h('label', { for: id }, label), input);
}

export async function enter(main) {
  const addr = h('input', { type: 'text', placeholder: '192.168.1.40:502', required: true, autocomplete: 'off' });
  const unit = h('input', { type: 'number', min: 0, max: 255, value: 1 });
  const reg = h('input', { type: 'text', placeholder: '1000 / 0x3E8', required: true, autocomplete: 'off' });
  const func = h('select', {}, ['3', '4', '6', '16'].map((f) => h('option', { value: f }, f)));
  const type = h('select', {}, TYPES.map((x) => h('option', { value: x }, t(`mb_type_${x}`))));
  const cnt = h('input', { type: 'number', min: 1, max: 125, value: 1 });
  const order = h('select', {}, ['hl', 'lh'].map((o) => h('option', { value: o }, t(`mb_order_${o}`))));
  const val = h('input', { type: 'text', autocomplete: 'off' });
  const timeout = h('input', { type: 'number', min: 0.1, max: 5, step: 0.1, value: 2 });
  const out = h('pre', { id: 'mb-result', class: 'result', 'aria-live': 'polite' });
  const params = () => ({
    addr: addr.value.trim(), id: unit.value, reg: reg.value.trim(), func: func.value,
    type: type.value, cnt: cnt.value, order: order.value, timeout: timeout.value,
  });
  async function run(write) {
    if (!addr.value.trim() || !reg.value.trim()) {
      out.className = 'result error';
      out.textContent = t('mb_needs');
      return;
    }
    const p = params();
    if (write) {
      p.val = val.value;
      if (p.func === '3' || p.func === '4') p.func = '16';
    } else if (p.func === '6' || p.func === '16') {
      p.func = '3';
    }
    out.className = 'result';
    out.textContent = '…';
    try {
      const answer = await cnf(write ? 'modbus_set' : 'modbus_get', p);
      out.textContent = JSON.stringify(answer);
    } catch (e) {
      out.className = 'result error';
      out.textContent = `${t('error')}: ${e.message}`;
    }
  }
  fill(main, h('h1', {}, t('nav_modbus')), h('p', {}, t('mb_intro')),
    h('form', { id: 'mb-form', class: 'grid', onsubmit: (ev) => { ev.preventDefault(); run(false); } },
      field('mb-addr', t('mb_addr'), addr), field('mb-id', t('mb_id'), unit),
      field('mb-reg', t('mb_reg'), reg), field('mb-func', t('mb_func'), func),
      field('mb-type', t('mb_type'), type), field('mb-cnt', t('mb_cnt'), cnt),
      field('mb-order', t('mb_order'), order), field('mb-timeout', t('mb_timeout'), timeout),
      field('mb-val', t('mb_val'), val),
      h('div', { class: 'inline' },
        h('button', { type: 'submit', id: 'mb-read' }, t('mb_read')),
        h('button', { type: 'button', id: 'mb-write', class: 'secondary', onclick: () => run(true) }, t('mb_write')))),
    h('h2', {}, t('mb_answer')), out);
}
