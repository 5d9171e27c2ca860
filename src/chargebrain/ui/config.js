// Configuration (admin): devices and groups, global settings, meter definitions, the admin
// password and diagnostic logging. Forms come from get_config_schema.

import { cnf, saveSession, session } from './api.js';
import { download, fill, h, toast } from './dom.js';
import { t } from './i18n.js';
import { schemaForm } from './forms.js';

let schema = null;
let types = {};

export async function enter(main) {
  [schema, types] = await Promise.all([cnf('get_config_schema'), cnf('get_dev_types')]);
  fill(main, h('h1', {}, t('nav_config')),
    h('section', { id: 'cfg-devices', 'aria-labelledby': 'cfg-devices-h' }),
    h('section', { id: 'cfg-site', 'aria-labelledby': 'cfg-site-h' }),
    h('section', { id: 'cfg-meterdefs', 'aria-labelledby': 'cfg-md-h' }),
    h('section', { id: 'cfg-password', 'aria-labelledby': 'cfg-pwd-h' }),
    h('section', { id: 'cfg-diag', 'aria-labelledby': 'cfg-diag-h' }));
  await Promise.all([devices(), site(), meterDefs(), diag()]);
  password();
}

function kindOf(devType) {
  if (devType === 'evse_group') return 'group';
  return devType.startsWith('evse') ? 'evse' : 'meter';
}

async function devices() {
  const box = document.getElementById('cfg-devices');
  const list = await cnf('get_devices');
  const typeSelect = h('select', { id: 'new-dev-type' },
    Object.entries(types).map(([key, label]) => h('option', { value: key }, `${label} (${key})`)));
  fill(box, h('h2', { id: 'cfg-devices-h' }, t('cfg_devices')),
    h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, [t('id'), t('name'), t('type'), t('enabled'), t('actions')].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, list.map((d) => h('tr', { dataset: { dev: d.dev_id } },
        h('td', {}, d.dev_id), h('td', {}, d.name), h('td', {}, types[d.dev_type] || d.dev_type),
        h('td', {}, d.device_enabled ? '✓' : '—'),
        h('td', { class: 'actions' },
          h('button', { type: 'button', class: 'small', onclick: () => editDevice(d),
                        'aria-label': `${t('edit')} ${d.dev_id}` }, t('edit')),
          h('button', { type: 'button', class: 'small danger', onclick: () => deleteDevice(d),
                        'aria-label': `${t('delete')} ${d.dev_id}` }, t('delete')))))))),
    h('div', { class: 'inline' }, h('label', { for: 'new-dev-type' }, t('dev_type')), typeSelect,
      h('button', { type: 'button', id: 'add-device',
                    onclick: () => editDevice({ dev_type: typeSelect.value }, true) }, t('add_device'))));
}

function editDevice(dev, fresh = false) {
  const dialog = document.getElementById('dialog');
  const kind = kindOf(dev.dev_type);
  const form = schemaForm(schema.device[kind], dev, { fresh, skip: ['users'] });
  async function save(ev) {
    ev.preventDefault();
    const changes = form.changes();
    const body = fresh ? { dev_type: dev.dev_type, ...changes } : { dev_id: dev.dev_id, ...changes };
    try {
      await cnf('set_device', {}, { devices: [body] });
      dialog.close();
      toast(t('saved'));
      devices();
    } catch (e) { form.showError(e.message); }
  }
  fill(dialog, h('form', { onsubmit: save, class: 'device-form' },
    h('h2', { id: 'dialog-title' }, fresh ? `${t('new_device')}: ${types[dev.dev_type] || dev.dev_type}`
      : t('edit_device', { id: dev.dev_id })),
    form.el,
    h('div', { class: 'buttons sticky' }, h('button', { type: 'submit' }, t('save')),
      h('button', { type: 'button', class: 'secondary', onclick: () => dialog.close() }, t('cancel')))));
  dialog.showModal();
}

async function deleteDevice(dev) {
  if (!window.confirm(t('confirm_delete', { what: `${dev.dev_id} ${dev.name}` }))) return;
  try {
    await cnf('del_device', { dev_id: dev.dev_id });
    toast(t('deleted'));
    devices();
  } catch (e) { toast(e.message, true); }
}

async function site() {
  const box = document.getElementById('cfg-site');
  const params = await cnf('get_params');
  const form = schemaForm(schema.site, params);
  async function save(ev) {
    ev.preventDefault();
    const changes = form.changes();
    if (!Object.keys(changes).length) return;
    try {
      await cnf('set_params', {}, changes);
      toast(t('saved'));
      site();
    } catch (e) { form.showError(e.message); }
  }
  fill(box, h('h2', { id: 'cfg-site-h' }, t('cfg_site')),
    h('form', { onsubmit: save, id: 'site-form' }, form.el,
      h('div', { class: 'buttons' }, h('button', { type: 'submit', id: 'site-save' }, t('save')))));
}

async function meterDefs() {
  const box = document.getElementById('cfg-meterdefs');
  const defs = await cnf('get_meter_defs');
  const file = h('input', { id: 'md-file', type: 'file', accept: '.json,.json5,application/json' });
  const text = h('textarea', { id: 'md-text', rows: 8, spellcheck: 'false' });
  const result = h('div', { id: 'md-result', role: 'alert' });
  file.addEventListener('change', async () => { if (file.files[0]) text.value = await file.files[0].text(); });
  async function upload(ev) {
    ev.preventDefault();
    fill(result);
    try {
      await cnf('set_meter_def', {}, text.value);
      toast(t('saved'));
      meterDefs();
    } catch (e) {
      result.append(h('p', { class: 'error' }, e.message));
      const line = /line (\d+)/.exec(e.message);
      if (line) result.append(listing(text.value, Number(line[1])));
    }
  }
  async function remove(def) {
    if (!window.confirm(t('confirm_delete', { what: def.dev_type }))) return;
    try { await cnf('del_meter_def', { dev_type: def.dev_type }); meterDefs(); } catch (e) { toast(e.message, true); }
  }
  fill(box, h('h2', { id: 'cfg-md-h' }, t('cfg_meterdefs')),
    h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, [t('type'), t('name'), t('origin'), t('actions')].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, defs.map((d) => h('tr', {}, h('td', {}, d.dev_type), h('td', {}, d.name), h('td', {}, d.origin),
        h('td', {}, d.origin === 'builtin' ? '' : h('button', { type: 'button', class: 'small danger',
          onclick: () => remove(d), 'aria-label': `${t('delete')} ${d.dev_type}` }, t('delete')))))))),
    h('form', { onsubmit: upload, class: 'stack' },
      h('label', { for: 'md-file' }, t('md_choose')), file,
      h('label', { for: 'md-text' }, t('md_text')), text,
      h('button', { type: 'submit', id: 'md-upload' }, t('upload'))),
    result);
}

/** The uploaded text with line numbers, the line an error names marked. */
function listing(text, bad) {
  const lines = text.split('\n');
  const from = Math.max(1, bad - 3);
  const to = Math.min(lines.length, bad + 3);
  const out = h('ol', { class: 'listing', start: from });
  for (let n = from; n <= to; n += 1) {
    out.append(h('li', { class: n === bad ? 'bad' : '', 'aria-current': n === bad ? 'true' : null },
      h('code', {}, lines[n - 1] || ' ')));
  }
  return h('div', {}, h('p', {}, t('at_line', { n: bad })), out);
}

function password() {
  const box = document.getElementById('cfg-password');
  const old = h('input', { id: 'pwd-old', type: 'password', autocomplete: 'current-password' });
  const fresh = h('input', { id: 'pwd-new', type: 'password', autocomplete: 'new-password' });
  const msg = h('p', { class: 'error', role: 'alert' });
  async function change(ev) {
    ev.preventDefault();
    msg.textContent = '';
    try {
      await cnf('change_admin_pwd', { old_pwd: old.value, new_pwd: fresh.value });
      Object.assign(session, { pwd: fresh.value, open: fresh.value === '' });
      saveSession();
      old.value = ''; fresh.value = '';
      toast(t('saved'));
    } catch (e) { msg.textContent = e.message; }
  }
  fill(box, h('h2', { id: 'cfg-pwd-h' }, t('cfg_password')),
    h('form', { onsubmit: change, class: 'stack narrow' },
      h('label', { for: 'pwd-old' }, t('old_pwd')), old,
      h('label', { for: 'pwd-new' }, t('new_pwd')), fresh,
      h('button', { type: 'submit' }, t('change')), msg));
}

function diag() {
  const box = document.getElementById('cfg-diag');
  const render = (s) => fill(box, h('h2', { id: 'cfg-diag-h' }, t('cfg_diag')),
    s ? h('p', { id: 'diag-state' }, t('diag_state', { s: s.enabled ? t('on') : t('off') })) : null,
    h('div', { class: 'buttons' },
      h('button', { type: 'button', onclick: async () => render(await cnf('set_diag_logging', { enable: 1 })) }, t('diag_on')),
      h('button', { type: 'button', class: 'secondary', onclick: async () => render(await cnf('set_diag_logging', { enable: 0 })) }, t('diag_off')),
      h('button', { type: 'button', class: 'secondary', onclick: async () => download('diag.log', await cnf('get_diag_log')) }, t('diag_download'))));
  render(null);
}
