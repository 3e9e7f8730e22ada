// Modal dialogs: a confirmation with two clear verbs, and the conflict of an edit with a newer
// version (both versions side by side). A <dialog> opened with showModal(): the rest of the page
// is inert, the focus stays inside, Escape picks the safe answer. Built with createElement only.

import { h, nextId } from './core.js';

/**
 * Opens a modal dialog and resolves with the `value` of the button pressed (`cancelValue` on
 * Escape). `buttons`: [{label, value, kind: 'danger' | 'primary' | 'secondary', focus}].
 */
export function openDialog({ id, title, body = [], buttons, cancelValue = null, wide = false }) {
  return new Promise((resolve) => {
    const titleId = nextId('dialog-title');
    const opener = document.activeElement;
    const dlg = h('dialog', { id, class: wide ? 'dialog dialog-wide' : 'dialog', 'aria-labelledby': titleId });
    let done = false;
    const finish = (value) => {
      if (done) return;
      done = true;
      if (dlg.open) dlg.close();
      dlg.remove();
      if (opener?.isConnected) opener.focus?.();
      resolve(value);
    };
    const kinds = { danger: 'btn btn-danger-solid', primary: 'btn', secondary: 'btn btn-secondary' };
    const buttonEls = buttons.map((b) =>
      h('button', { type: 'button', class: kinds[b.kind ?? 'secondary'], 'data-value': String(b.value), onclick: () => finish(b.value) }, b.label),
    );
    dlg.append(h('h2', { id: titleId, class: 'dialog-title' }, title), h('div', { class: 'dialog-body' }, body), h('div', { class: 'form-actions dialog-actions' }, buttonEls));
    dlg.addEventListener('cancel', (event) => {
      event.preventDefault();
      finish(cancelValue);
    });
    document.body.append(dlg);
    dlg.showModal();
    const focus = buttons.findIndex((b) => b.focus);
    buttonEls[focus >= 0 ? focus : buttonEls.length - 1]?.focus();
  });
}

/**
 * "Make vera an admin?" [Change role] [Keep role]: true when confirmed. The focus starts on the
 * safe answer, so that a stray Enter changes nothing.
 */
export async function confirmDialog({ title, message, confirmLabel, keepLabel, danger = true, id = 'confirm-dialog' }) {
  const answer = await openDialog({
    id,
    title,
    body: message ? (Array.isArray(message) ? message : [h('p', null, message)]) : [],
    buttons: [
      { label: confirmLabel, value: 'yes', kind: danger ? 'danger' : 'primary' },
      { label: keepLabel, value: 'no', kind: 'secondary', focus: true },
    ],
    cancelValue: 'no',
  });
  return answer === 'yes';
}

const shown = (v) => (v === null || v === undefined || v === '' ? '—' : String(v));

/**
 * The edit could not be saved because the item changed meanwhile (412): both versions side by
 * side, field by field (`rows`: [label, mine, theirs]). Resolves 'overwrite' ("Overwrite with
 * mine") or 'keep' ("Keep theirs"; also Escape).
 */
export function conflictDialog({ what, intro, rows, by }) {
  const changed = rows.filter(([, mine, theirs]) => shown(mine) !== shown(theirs)).length;
  const body = [
    h('p', null, intro ?? `Someone changed this ${what} after you started editing it${by ? ` (${by})` : ''}. Saving your version would overwrite their change. Choose which version to keep.`),
    h(
      'div',
      { class: 'table-wrap conflict-wrap' },
      h(
        'table',
        { class: 'conflict-table' },
        h('caption', { class: 'visually-hidden' }, `Your version and the current version of the ${what}`),
        h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Field'), h('th', { scope: 'col' }, 'Your version'), h('th', { scope: 'col' }, 'Current version'))),
        h(
          'tbody',
          null,
          rows.map(([label, mine, theirs]) => {
            const differs = shown(mine) !== shown(theirs);
            return h(
              'tr',
              { class: differs ? 'conflict-differs' : null, 'data-field': label },
              h('th', { scope: 'row' }, label, differs ? h('span', { class: 'visually-hidden' }, ' (differs)') : null),
              h('td', { class: 'conflict-mine' }, h('div', { class: 'conflict-text' }, shown(mine))),
              h('td', { class: 'conflict-theirs' }, h('div', { class: 'conflict-text' }, shown(theirs))),
            );
          }),
        ),
      ),
    ),
    h('p', { class: 'muted' }, changed ? `${changed} field${changed === 1 ? '' : 's'} differ${changed === 1 ? 's' : ''}.` : 'The fields are the same, but the item changed (e.g. its version).'),
  ];
  return openDialog({
    id: 'conflict-dialog',
    title: `This ${what} was changed by someone else`,
    body,
    wide: true,
    buttons: [
      { label: 'Overwrite with mine', value: 'overwrite', kind: 'danger' },
      { label: 'Keep theirs', value: 'keep', kind: 'secondary', focus: true },
    ],
    cancelValue: 'keep',
  });
}
