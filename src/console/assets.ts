// The console's only two static files, kept as strings so they are part of the build and
// found the same way from src/ and dist/. No external assets: the console works offline.

export const CONSOLE_CSS = `
:root {
  color-scheme: light;
  --fg: #1b1f24; --muted: #525a63; --bg: #ffffff; --panel: #f4f6f8; --line: #c9d0d7;
  --accent: #0b5cad; --accent-fg: #ffffff; --ok: #116329; --warn: #7a4b00; --bad: #a40e26;
  --focus: #ffbf47;
}
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--fg); background: var(--bg); }
a { color: var(--accent); }
a:focus-visible, button:focus-visible, input:focus-visible, select:focus-visible,
summary:focus-visible { outline: 3px solid var(--focus); outline-offset: 2px; }
.skip { position: absolute; left: -999px; top: 0; background: var(--bg); padding: .5rem; }
.skip:focus { left: .5rem; }
header.top { background: #0d2a45; color: #fff; padding: .5rem 1rem; display: flex;
  flex-wrap: wrap; align-items: center; gap: .5rem 1.5rem; }
header.top a { color: #fff; }
header.top .brand { font-weight: 700; margin-right: auto; text-decoration: none; }
header.top nav ul { list-style: none; display: flex; flex-wrap: wrap; gap: .25rem 1rem;
  margin: 0; padding: 0; }
header.top nav a[aria-current="page"] { font-weight: 700; text-decoration-thickness: 3px; }
header.top form { margin: 0; }
main { padding: 1rem; max-width: 78rem; margin: 0 auto; }
h1 { font-size: 1.5rem; margin: .5rem 0 1rem; }
h2 { font-size: 1.2rem; margin: 1.5rem 0 .5rem; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(16rem, 1fr)); gap: 1rem; }
.card { background: var(--panel); border: 1px solid var(--line); border-radius: 6px;
  padding: .75rem 1rem; }
.card h2, .card h3 { margin-top: 0; font-size: 1.1rem; }
dl.kv { display: grid; grid-template-columns: auto 1fr; gap: .15rem .75rem; margin: 0; }
dl.kv dt { color: var(--muted); }
dl.kv dd { margin: 0; overflow-wrap: anywhere; }
.table-wrap { overflow-x: auto; border: 1px solid var(--line); border-radius: 6px; }
table { border-collapse: collapse; width: 100%; }
caption { text-align: left; font-weight: 600; padding: .5rem .75rem; }
th, td { text-align: left; padding: .4rem .75rem; border-top: 1px solid var(--line);
  vertical-align: top; }
thead th { background: var(--panel); }
td.num, th.num { text-align: right; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .9em; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; margin: 0; max-height: 14rem; overflow: auto; }
button, .button { font: inherit; border: 1px solid var(--accent); background: var(--accent);
  color: var(--accent-fg); border-radius: 4px; padding: .3rem .8rem; cursor: pointer;
  min-height: 2.25rem; }
button.secondary { background: var(--bg); color: var(--accent); }
button.danger { background: var(--bad); border-color: var(--bad); }
form.inline { display: inline; }
.actions { display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; }
label { font-weight: 600; display: block; }
input, select { font: inherit; padding: .3rem .5rem; border: 1px solid #6b7480; border-radius: 4px;
  min-height: 2.25rem; max-width: 100%; }
.filters { display: flex; flex-wrap: wrap; gap: .75rem; align-items: flex-end; margin-bottom: 1rem; }
.status { font-weight: 600; }
.status.ok { color: var(--ok); } .status.warn { color: var(--warn); } .status.bad { color: var(--bad); }
.notice { border-left: 4px solid var(--ok); background: #eaf5ec; padding: .5rem .75rem; margin: 0 0 1rem; }
.error { border-left: 4px solid var(--bad); background: #fbeaec; padding: .5rem .75rem; margin: 0 0 1rem; }
.side-by-side { display: grid; grid-template-columns: repeat(auto-fit, minmax(15rem, 1fr)); gap: 1rem; }
.muted { color: var(--muted); }
progress { width: 100%; height: 1.25rem; }
.login { max-width: 24rem; margin: 4rem auto; }
.login input { width: 100%; margin-bottom: 1rem; }
.pager { margin: 1rem 0; }
ul.attention { margin: 0; padding-left: 1.25rem; }
ul.attention li { margin: .25rem 0; }
details { margin-top: .25rem; }
p.reason { margin: 0; max-width: 40rem; }
.filters > div { min-width: 0; max-width: 100%; }
@media (max-width: 40rem) {
  main { padding: .75rem; }
  .filters > div { flex: 1 1 100%; }
  .filters select, .filters input { width: 100%; }
  th, td { padding: .35rem .5rem; }
}
`;

// Progressive enhancement only: every page works without it. It asks before a destructive
// action (forms with data-confirm) and keeps a running reconcile's progress bar moving.
export const CONSOLE_JS = `
'use strict';
document.addEventListener('submit', function (event) {
  var form = event.target;
  var question = form && form.getAttribute && form.getAttribute('data-confirm');
  if (question && !window.confirm(question)) event.preventDefault();
});
(function () {
  var box = document.getElementById('reconcile');
  if (!box || box.getAttribute('data-status') !== 'running') return;
  var bar = box.querySelector('progress');
  var label = box.querySelector('[data-reconcile-label]');
  function tick() {
    fetch('/console/reconcile.json', { credentials: 'same-origin', cache: 'no-store' })
      .then(function (res) { return res.ok ? res.json() : null; })
      .then(function (run) {
        if (!run) return;
        bar.value = run.percent;
        bar.textContent = run.percent + '%';
        label.textContent = run.label;
        box.setAttribute('data-status', run.status);
        if (run.status === 'running') setTimeout(tick, 1000);
      })
      .catch(function () { setTimeout(tick, 3000); });
  }
  setTimeout(tick, 1000);
})();
`;
