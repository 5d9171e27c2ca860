// Small helpers to build the page: elements, numbers and times as people read them.

/** An element: h('div', {class: 'x', onclick: f}, 'text', child, [more]). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'class') {
      el.className = value;
    } else if (key === 'value' || key === 'checked' || key === 'selected') {
      el[key] = value;
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replace everything inside `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

let counter = 0;
export function uid(prefix = 'f') { counter += 1; return `${prefix}-${counter}`; }

export function amps(ma) { return (Number(ma || 0) / 1000).toFixed(1); }

export function kw(w) {
  const v = Number(w || 0);
  return Math.abs(v) >= 1000 ? `${(v / 1000).toFixed(2)} kW` : `${Math.round(v)} W`;
}

export function kwh(wh) { return `${(Number(wh || 0) / 1000).toFixed(2)} kWh`; }

export function duration(secs) {
  const s = Math.max(0, Math.round(secs));
  if (s < 90) return `${s} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
  return `${Math.round(s / 86400)} d`;
}

/** Show a short message at the bottom of the screen. */
export function toast(text, bad = false) {
  const box = document.getElementById('toast');
  const item = h('div', { class: bad ? 'msg bad' : 'msg' }, text);
  box.append(item);
  setTimeout(() => item.remove(), bad ? 8000 : 3500);
}

/** Download `text` as a file, made here (no request). */
export function download(name, text, type = 'text/plain') {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = h('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
