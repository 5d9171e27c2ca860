// Users and their RFIDs/PINs: the admin sees and edits all; a user edits their own object
// (not which EVSEs they may use, which stays with the admin, as the API says).

import { cnf, isAdmin, saveSession, session } from './api.js';
import { fill, h, toast, uid } from './dom.js';
import { t } from './i18n.js';

let evses = [];

export async function enter(main) {
  const info = await cnf('get_dev_info');
  evses = info.devices.filter((d) => d.is_evse && d.dev_type !== 'evse_group');
  if (!isAdmin()) {
    fill(main, h('h1', {}, t('me')), h('div', { id: 'user-edit' }));
    const me = await cnf('get_user', { id: session.user.id });
    editor(document.getElementById('user-edit'), me, false);
    return;
  }
  fill(main, h('h1', {}, t('users')), h('div', { id: 'user-list' }),
    h('button', { type: 'button', id: 'add-user', onclick: () => open({ name: '', display: true, dev_ids: [], rfids: [] }) }, t('add_user')),
    h('div', { id: 'user-edit' }));
  await list();
}

async function list() {
  const users = await cnf('get_users');
  fill(document.getElementById('user-list'), h('div', { class: 'table-wrap' }, h('table', {},
    h('thead', {}, h('tr', {}, [t('name'), t('user_id'), t('may_charge_at'), t('cards'), t('actions')].map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, users.map((u) => h('tr', { dataset: { user: u.id } },
      h('td', {}, u.name || '—'), h('td', {}, h('code', {}, u.id)),
      h('td', {}, u.dev_ids.join(', ') || t('none')),
      h('td', {}, u.rfids.map((c) => c.name || c.id).join(', ') || t('none')),
      h('td', { class: 'actions' },
        h('button', { type: 'button', class: 'small', onclick: () => open(u), 'aria-label': `${t('edit')} ${u.name || u.id}` }, t('edit')),
        h('button', { type: 'button', class: 'small danger', onclick: () => remove(u), 'aria-label': `${t('delete')} ${u.name || u.id}` }, t('delete')))))))));
}

function open(user) {
  const box = document.getElementById('user-edit');
  editor(box, user, true);
  box.scrollIntoView({ block: 'start' });
}

async function remove(user) {
  if (!window.confirm(t('confirm_delete', { what: user.name || user.id }))) return;
  try { await cnf('del_user', { id: user.id }); toast(t('deleted')); list(); } catch (e) { toast(e.message, true); }
}

function cardRow(card, rows) {
  const ids = { id: uid('card'), name: uid('cname'), auth: uid('auth'), ovch: uid('ovch') };
  const el = h('fieldset', { class: 'card-row' }, h('legend', {}, t('card_id')),
    h('div', { class: 'field' }, h('label', { for: ids.id }, t('card_id')),
      h('input', { id: ids.id, class: 'c-id', value: card.id || '', autocomplete: 'off', spellcheck: 'false' })),
    h('div', { class: 'field' }, h('label', { for: ids.name }, t('card_name')),
      h('input', { id: ids.name, class: 'c-name', value: card.name || '' })),
    h('div', { class: 'check' }, h('input', { id: ids.auth, class: 'c-auth', type: 'checkbox', checked: card.ac_auth !== false }),
      h('label', { for: ids.auth }, t('ac_auth'))),
    h('div', { class: 'check' }, h('input', { id: ids.ovch, class: 'c-ovch', type: 'checkbox', checked: Boolean(card.ac_ovch) }),
      h('label', { for: ids.ovch }, t('ac_ovch'))),
    h('button', { type: 'button', class: 'small secondary', onclick: () => el.remove() }, t('remove')));
  el.dataset.phases = String(card.used_phases || 0);
  rows.append(el);
}

function editor(box, user, admin) {
  const name = h('input', { id: 'u-name', value: user.name || '', maxlength: 100 });
  const display = h('input', { id: 'u-display', type: 'checkbox', checked: user.display !== false });
  const cards = h('div', { class: 'cards' });
  for (const card of user.rfids || []) cardRow(card, cards);
  const evseBoxes = evses.map((d) => {
    const id = uid('ev');
    return h('div', { class: 'check' }, h('input', { id, type: 'checkbox', value: d.dev_id, class: 'u-evse',
      checked: (user.dev_ids || []).includes(d.dev_id), disabled: !admin }), h('label', { for: id }, `${d.dev_id} ${d.name}`));
  });
  const msg = h('p', { class: 'error', role: 'alert' });
  async function save(ev) {
    ev.preventDefault();
    msg.textContent = '';
    const body = {
      name: name.value, display: display.checked,
      rfids: [...cards.querySelectorAll('.card-row')].map((row) => ({
        id: row.querySelector('.c-id').value.trim(), name: row.querySelector('.c-name').value,
        ac_auth: row.querySelector('.c-auth').checked, ac_ovch: row.querySelector('.c-ovch').checked,
        used_phases: Number(row.dataset.phases || 0) })),
    };
    if (user.id) body.id = user.id;
    if (admin) body.dev_ids = [...box.querySelectorAll('.u-evse:checked')].map((el) => el.value);
    try {
      const saved = await cnf('set_user', {}, body);
      toast(t('saved'));
      if (admin) { list(); editor(box, saved, true); } else {
        session.user = saved; saveSession(); editor(box, saved, false);
      }
    } catch (e) { msg.textContent = e.message; }
  }
  fill(box, h('form', { onsubmit: save, class: 'stack user-form' },
    h('h2', {}, user.id ? `${user.name || user.id}` : t('add_user')),
    user.id ? h('p', {}, `${t('user_id')}: `, h('code', {}, user.id)) : null,
    h('label', { for: 'u-name' }, t('name')), name,
    h('div', { class: 'check' }, display, h('label', { for: 'u-display' }, t('display'))),
    h('fieldset', {}, h('legend', {}, t('may_charge_at')), evseBoxes),
    h('h3', {}, t('cards')), cards,
    h('button', { type: 'button', class: 'secondary', id: 'add-card', onclick: () => cardRow({ ac_auth: true }, cards) }, t('add_card')),
    msg,
    h('div', { class: 'buttons' }, h('button', { type: 'submit', id: 'user-save' }, t('save')))));
}
