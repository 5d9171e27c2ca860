// Forms built from the JSON Schema get_config_schema answers: the same fields, ranges and
// meanings the API validates with. Advanced fields fold away; an error names its field.

import { h, uid } from './dom.js';
import { t } from './i18n.js';

function isFormula(prop) {
  return Array.isArray(prop.type) && prop.type.includes('string');
}

/** Fields the form can edit (objects and lists have pages of their own). */
export function editable(prop) {
  const type = Array.isArray(prop.type) ? prop.type : [prop.type];
  return !type.includes('array') && !type.includes('object');
}

function input(name, prop, value, id) {
  const type = Array.isArray(prop.type) ? prop.type : [prop.type];
  if (type.includes('boolean') && type.length === 1) {
    return h('input', { id, name, type: 'checkbox', checked: Boolean(value) });
  }
  if (prop.enum) {
    return h('select', { id, name }, prop.enum.map((v) =>
      h('option', { value: String(v), selected: String(v) === String(value) }, String(v))));
  }
  if (isFormula(prop) || type.includes('string')) {
    const attrs = { id, name, type: prop.format === 'password' ? 'password' : 'text',
                    value: value === undefined || value === null ? '' : String(value),
                    maxlength: prop.maxLength, spellcheck: 'false', autocomplete: 'off' };
    return h('input', attrs);
  }
  return h('input', { id, name, type: 'number', inputmode: 'decimal', min: prop.minimum,
    max: prop.maximum, step: type.includes('integer') ? '1' : 'any',
    value: value === undefined || value === null ? '' : String(value) });
}

/** The value a field holds now, typed as the schema says. */
function read(el, prop) {
  if (el.type === 'checkbox') return el.checked;
  const type = Array.isArray(prop.type) ? prop.type : [prop.type];
  const text = el.value.trim();
  if (isFormula(prop)) return /^-?\d+(\.\d+)?$/.test(text) ? Number(text) : text;
  if (type.includes('integer') || type.includes('number')) {
    if (prop.enum && typeof prop.enum[0] === 'string') return text;
    return text === '' ? text : Number(text);
  }
  return el.value;
}

/**
 * A form for `schema` (an object schema) filled with `values`. Returns {el, changes(), showError(msg)}.
 * `changes()` gives the fields that differ from `values` (all that were set, for a new object).
 */
export function schemaForm(schema, values, { fresh = false, skip = [] } = {}) {
  const fields = {};
  const rows = [];
  const advanced = h('input', { type: 'checkbox', id: uid('adv') });
  for (const [name, prop] of Object.entries(schema.properties || {})) {
    if (!editable(prop) || skip.includes(name)) continue;
    const id = uid(name);
    const value = name in values ? values[name] : prop.default;
    const el = input(name, prop, value, id);
    const help = h('small', { id: `${id}-help`, class: 'help' }, prop.description || '',
      prop.unit ? ` [${prop.unit}]` : '');
    el.setAttribute('aria-describedby', `${id}-help`);
    const err = h('span', { class: 'field-error', role: 'alert', id: `${id}-err` });
    const label = h('label', { for: id }, name, prop.unit ? ` (${prop.unit})` : '');
    const rowEl = h('div', { class: `field${el.type === 'checkbox' ? ' check' : ''}${prop.advanced ? ' advanced' : ''}`,
                             dataset: { field: name } },
      el.type === 'checkbox' ? [el, label] : [label, el], help, err);
    fields[name] = { el, prop, err, initial: read(el, prop), row: rowEl };
    rows.push(rowEl);
  }
  const form = h('div', { class: 'schema-form hide-advanced' },
    h('div', { class: 'check adv-toggle' }, advanced, h('label', { for: advanced.id }, t('advanced'))),
    h('div', { class: 'form-error', role: 'alert' }), rows);
  advanced.addEventListener('change', () => form.classList.toggle('hide-advanced', !advanced.checked));
  return {
    el: form,
    changes() {
      const out = {};
      for (const [name, f] of Object.entries(fields)) {
        const now = read(f.el, f.prop);
        if (fresh ? now !== '' && now !== f.prop.default : now !== f.initial) out[name] = now;
      }
      return out;
    },
    clearErrors() {
      form.querySelector('.form-error').textContent = '';
      for (const f of Object.values(fields)) { f.err.textContent = ''; f.el.removeAttribute('aria-invalid'); }
    },
    /** Show an API error at its field ("field: message") or above the form. */
    showError(message) {
      this.clearErrors();
      // "field: why" names its field; so does a message whose first word is a field's name.
      const match = /^([a-z_0-9]+)(?:\[\d+\])?(?:\.[a-z_0-9.]+)?(: | )(.*)$/i.exec(message);
      const f = match && fields[match[1]];
      if (f) {
        f.err.textContent = match[2] === ': ' ? match[3] : message;
        f.el.setAttribute('aria-invalid', 'true');
        if (f.prop.advanced) { advanced.checked = true; form.classList.remove('hide-advanced'); }
        f.el.focus();
      } else {
        form.querySelector('.form-error').textContent = message;
      }
    },
  };
}
