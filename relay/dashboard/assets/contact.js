// The person page: GET /v1/contacts, and POST /v1/contacts/erase after a
// confirmation. Every value from the API reaches the page through
// textContent, never as HTML.
'use strict';

(function () {
  if (document.body.dataset.page !== 'contact') return;
  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const csrf = csrfMeta ? csrfMeta.content : '';
  const out = document.getElementById('contact');
  const params = new URLSearchParams(location.search);
  const by = ['email', 'phone', 'id'].includes(params.get('by')) ? params.get('by') : 'email';
  const q = params.get('q') || '';
  document.getElementById('contact-field').value = by;
  document.getElementById('contact-value').value = q;
  if (!q) return;

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') el.className = v;
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v);
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }
  const time = (iso) => iso ? new Date(iso).toLocaleString() : '—';
  const card = (...c) => h('div', {class: 'card section'}, ...c);
  const message = (text) => out.replaceChildren(h('div', {class: 'card'}, h('div', {class: 'empty empty-lg'}, text)));

  async function call(method, path, payload) {
    const opts = {method, credentials: 'same-origin', headers: {'Accept': 'application/json'}};
    if (method !== 'GET') {
      opts.headers['X-CSRF-Token'] = csrf;
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(payload);
    }
    const res = await fetch(path, opts);
    if (res.status === 401) {
      location.assign('/login?next=' + encodeURIComponent(location.pathname + location.search));
      throw new Error('Your session has ended.');
    }
    const data = await res.json().catch(() => null);
    if (!res.ok) throw new Error(data && data.error ? data.error : 'Relay answered ' + res.status + '.');
    return data;
  }

  function channels(c) {
    const names = Object.keys(c.channels || {}).sort();
    const rows = names.map((n) => {
      const s = c.channels[n];
      return h('tr', {class: 'row', 'data-channel': n},
        h('td', {}, n),
        h('td', {}, h('span', {class: 'badge badge-' + (s.suppressed ? 'red' : 'green')}, s.state + (s.suppressed ? ' — suppressed' : ''))),
        h('td', {}, time(s.since)),
        h('td', {}, s.name + ' ', h('a', {class: 'mono', href: '/activities?id=' + encodeURIComponent(s.activity_id)}, s.activity_id)));
    });
    return card(h('div', {class: 'card-head'}, h('h2', {}, 'Channels')),
      h('div', {class: 'table-wrap'}, h('table', {class: 'table', id: 'contact-channels'},
        h('thead', {}, h('tr', {}, h('th', {}, 'Channel'), h('th', {}, 'State'), h('th', {}, 'Since'), h('th', {}, 'Set by'))),
        h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', {colspan: 4, class: 'empty'}, 'No consent, subscription, bounce or abuse activity known: nothing is suppressed.'))))));
  }

  function activities(c) {
    const rows = (c.activities || []).map((a) => h('tr', {class: 'row', 'data-id': a.id},
      h('td', {}, h('a', {class: 'mono', href: '/activities?id=' + encodeURIComponent(a.id)}, a.id)),
      h('td', {}, a.name),
      h('td', {}, time(a.received_at)),
      h('td', {}, (a.destinations || []).map((d) => d.name + ': ' + d.status).join(', '))));
    return card(h('div', {class: 'card-head'}, h('h2', {}, 'Newest activities'), h('span', {class: 'muted'}, c.scanned + ' stored activities read')),
      h('div', {class: 'table-wrap'}, h('table', {class: 'table', id: 'contact-activities'},
        h('thead', {}, h('tr', {}, h('th', {}, 'Activity'), h('th', {}, 'Name'), h('th', {}, 'Received'), h('th', {}, 'Destinations'))),
        h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', {colspan: 4, class: 'empty'}, 'No retained activity of this person.'))))));
  }

  async function erase(btn) {
    if (!window.confirm('Erase every stored activity, dead letter and log entry of ' + q + '? This cannot be undone.')) return;
    btn.disabled = true;
    btn.textContent = 'Erasing…';
    try {
      const r = await call('POST', '/v1/contacts/erase', {[by]: q});
      const e = r.erased;
      message('Erased ' + e.activities + ' activities, ' + e.queued + ' queued copies, ' + e.attempt_histories + ' attempt histories, ' +
        e.dead_letters + ' dead letters and ' + e.log_entries + ' log entries. Recorded as ' + r.identifier_hash + '.');
    } catch (err) {
      btn.disabled = false;
      btn.textContent = 'Erase this person';
      window.alert('The erasure did not complete: ' + err.message);
    }
  }

  (async () => {
    message('Looking up ' + q + '…');
    let c;
    try {
      c = await call('GET', '/v1/contacts?' + new URLSearchParams({[by]: q}).toString());
    } catch (err) {
      message('The person could not be looked up: ' + err.message);
      return;
    }
    const btn = h('button', {type: 'button', class: 'btn btn-danger', id: 'erase'}, 'Erase this person');
    btn.addEventListener('click', () => erase(btn));
    out.replaceChildren(channels(c), activities(c), card(h('div', {class: 'card-head'}, h('h2', {}, 'Erasure')),
      h('div', {class: 'detail-body'}, h('p', {class: 'muted'}, 'Forget this person: their activities, hand-overs, attempt histories, dead letters and delivery-log entries are deleted and overwritten on disk. Their channel states are kept (by a hash), so an opt-out still holds.'), btn)));
  })();
})();
