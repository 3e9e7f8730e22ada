// The collaboration tasks: a list everyone can read and edit. An edit is based on the version it
// opened (GET …/tasks/{id} and its ETag) and sends it as If-Match: when someone else saved in
// between, the service answers 412 and the conflict dialog shows both versions instead of
// overwriting theirs silently.

import { $, h, shortTime, field, table, syncRows, emptyRow, confirmButton, notify, rateLimit, ApiError, FieldProblem, onSubmit, alertArea, Page, count } from './core.js';
import { conflictDialog } from './dialog.js';

// The service's limits (OpenAPI: TaskInput.title maxLength 255, description maxLength 10000).
export const TASK_TITLE_MAX = 255;
export const TASK_DESCRIPTION_MAX = 10_000;

const taskPath = (id) => `/api/v1/collab/tasks/${encodeURIComponent(id)}`;

/** The editable fields of a task form. */
function taskBody(data) {
  const title = String(data.get('title') ?? '').trim();
  if (!title) throw new FieldProblem('title', 'Give the task a title.');
  const description = String(data.get('description') ?? '').trim();
  return description ? { title, description } : { title };
}

export class TasksPage extends Page {
  get title() {
    return 'Tasks';
  }

  render(main) {
    this.alerts = alertArea();
    this.tbody = h('tbody', { id: 'tasks-body' }, emptyRow(5, 'Loading…'));
    this.total = h('span', { class: 'muted list-total', id: 'tasks-total', 'aria-live': 'polite' });
    this.editor = h('section', { class: 'card', id: 'task-editor', 'aria-labelledby': 'task-editor-title', hidden: true });
    const form = h(
      'form',
      { id: 'task-form', novalidate: true },
      field({ label: 'Title', id: 'task-title', name: 'title', required: true, limit: TASK_TITLE_MAX, autocomplete: 'off' }),
      field({ label: 'Description', id: 'task-description', name: 'description', type: 'textarea', rows: '3', limit: TASK_DESCRIPTION_MAX }),
      h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'btn' }, 'Add task')),
    );
    onSubmit(form, async (data) => {
      const task = await this.api('/api/v1/collab/tasks', { method: 'POST', body: taskBody(data) });
      form.reset();
      notify(`Task “${task.title}” added.`);
      if (this.alive()) this.load();
    });
    main.replaceChildren(
      this.head('Tasks', 'Shared tasks everyone can read and edit. The list updates live.'),
      h(
        'div',
        { class: 'grid-2 grid-side' },
        h('section', { class: 'card', 'aria-labelledby': 'task-form-title' }, h('h2', { id: 'task-form-title' }, 'New task'), form),
        h(
          'div',
          { class: 'stack' },
          this.editor,
          h(
            'section',
            { class: 'card', 'aria-labelledby': 'tasks-list-title' },
            h('div', { class: 'card-head' }, h('div', { class: 'head-title' }, h('h2', { id: 'tasks-list-title' }, 'Task list'), this.total), h('button', { type: 'button', class: 'btn btn-secondary', onclick: () => this.load() }, 'Refresh')),
            this.alerts,
            table(['Title', 'Description', h('th', { scope: 'col', class: 'num' }, 'Version'), 'Updated', 'Actions'], this.tbody, 'Tasks'),
          ),
        ),
      ),
    );
    this.load();
  }

  refresh() {
    this.load();
  }

  onEvent(evt) {
    if (!String(evt.event ?? '').startsWith('task_')) return;
    this.debounced('reload', () => this.load());
    // The task being edited changed: say so now (the save will show both versions).
    const id = evt.task_id ?? evt.task?.id ?? evt.target;
    const who = evt.actor ?? 'Someone';
    if (this.editing && id === this.editing.id) this.editorNote(evt.event === 'task_deleted' ? `${who} deleted this task meanwhile.` : `${who} changed this task meanwhile: saving will show both versions.`);
  }

  async load() {
    try {
      const res = await this.api('/api/v1/collab/state/tasks');
      if (!this.alive()) return;
      const items = [...(res?.items ?? [])].reverse();
      this.total.textContent = count(items.length, 'task');
      syncRows(this.tbody, items, {
        key: (t) => t.id,
        sig: (t) => `${t.version}|${t.updated_at}`,
        row: (t) => this.row(t),
        empty: () => emptyRow(5, 'No tasks yet.'),
      });
    } catch (err) {
      if (err?.name === 'AbortError' || !this.alive()) return;
      this.tbody.replaceChildren(emptyRow(5, `Could not load the tasks: ${err.message}`));
    }
  }

  row(task) {
    return h(
      'tr',
      { 'data-task-id': task.id, 'data-version': String(task.version) },
      h('td', { class: 'cell-title' }, h('strong', null, task.title)),
      h('td', { class: 'cell-text' }, task.description ? h('span', { class: 'clamp' }, task.description) : h('span', { class: 'muted' }, '—')),
      h('td', { class: 'num' }, String(task.version)),
      h('td', { class: 'nowrap' }, shortTime(task.updated_at)),
      h(
        'td',
        null,
        h(
          'div',
          { class: 'actions' },
          h('button', { type: 'button', class: 'btn btn-secondary btn-small', 'aria-label': `Edit task ${task.title}`, onclick: () => this.edit(task) }, 'Edit'),
          confirmButton({
            label: 'Delete',
            ariaLabel: `Delete task ${task.title}`,
            question: 'Delete this task?',
            confirmLabel: 'Delete task',
            keepLabel: 'Keep task',
            onConfirm: () => this.remove(task),
          }),
        ),
      ),
    );
  }

  /** Deletes the version of the task this row shows: a newer one is shown first, not deleted. */
  async remove(task) {
    this.alerts.clear();
    try {
      const current = await this.api(taskPath(task.id), { full: true });
      if (current.data.version !== task.version) {
        const answer = await conflictDialog({
          what: 'task',
          intro: 'Someone changed this task after the list showed it. Deleting it would throw their change away.',
          rows: [
            ['Title', task.title, current.data.title],
            ['Description', task.description, current.data.description],
            ['Version', task.version, current.data.version],
          ],
        });
        if (answer !== 'overwrite') {
          notify('The task was kept.', { kind: 'info' });
          this.load();
          return;
        }
      }
      await this.api(taskPath(task.id), { method: 'DELETE', ifMatch: current.etag });
      notify(`Task “${task.title}” deleted.`);
      this.load();
    } catch (err) {
      if (err?.name === 'AbortError') return;
      if (err instanceof ApiError && err.status === 404) {
        notify('The task was already deleted.', { kind: 'info' });
        this.load();
        return;
      }
      this.alerts.show(err);
    }
  }

  /** Opens the editor on the task as the service has it now, remembering its ETag. */
  async edit(task) {
    this.alerts.clear();
    let current;
    try {
      current = await this.api(taskPath(task.id), { full: true });
    } catch (err) {
      if (err?.name !== 'AbortError') this.alerts.show(err);
      return;
    }
    if (!this.alive()) return;
    const base = current.data;
    this.editing = { id: base.id, etag: current.etag, base };
    this.note = h('p', { class: 'editor-note', id: 'task-edit-note', role: 'status', hidden: true });
    const form = h(
      'form',
      { id: 'task-edit-form', novalidate: true, 'data-version': String(base.version) },
      field({ label: 'Title', id: 'task-edit-title', name: 'title', required: true, limit: TASK_TITLE_MAX, value: base.title, autocomplete: 'off' }),
      field({ label: 'Description', id: 'task-edit-description', name: 'description', type: 'textarea', rows: '4', limit: TASK_DESCRIPTION_MAX, value: base.description ?? '' }),
      h(
        'div',
        { class: 'form-actions' },
        h('button', { type: 'submit', class: 'btn' }, 'Save task'),
        h('button', { type: 'button', class: 'btn btn-secondary', onclick: () => this.closeEditor(base.id) }, 'Close without saving'),
      ),
    );
    onSubmit(form, async (data) => {
      const body = taskBody(data);
      const saved = await this.save(base.id, body, this.editing.etag);
      if (!saved) return;
      notify(`Task “${saved.title}” saved.`);
      this.closeEditor(base.id);
      this.load();
    });
    this.editor.replaceChildren(h('h2', { id: 'task-editor-title' }, `Edit “${base.title}”`), h('p', { class: 'muted' }, `Version ${base.version}`), this.note, form);
    this.editor.hidden = false;
    $('#task-edit-title').focus();
    rateLimit.apply();
  }

  editorNote(text) {
    if (!this.note?.isConnected) return;
    this.note.textContent = text;
    this.note.hidden = false;
  }

  /**
   * PUT with If-Match. A 412: the current version next to this one; "Overwrite with mine" saves
   * again on top of the current version (its ETag), "Keep theirs" leaves it. The saved task, or
   * null when nothing was saved.
   */
  async save(id, body, etag) {
    for (;;) {
      try {
        const res = await this.api(taskPath(id), { method: 'PUT', body, ifMatch: etag, full: true });
        return res.data;
      } catch (err) {
        if (!(err instanceof ApiError) || err.status !== 412) throw err;
      }
      let current;
      try {
        current = await this.api(taskPath(id), { full: true });
      } catch (err) {
        if (err instanceof ApiError && err.status === 404) throw new ApiError(404, 'This task was deleted meanwhile: there is nothing to save it to.');
        throw err;
      }
      const theirs = current.data;
      const answer = await conflictDialog({
        what: 'task',
        by: `now version ${theirs.version}, ${shortTimeText(theirs.updated_at)}`,
        rows: [
          ['Title', body.title, theirs.title],
          ['Description', body.description ?? '', theirs.description ?? ''],
        ],
      });
      if (answer !== 'overwrite') {
        notify(`Kept the other version of “${theirs.title}”.`, { kind: 'info' });
        this.closeEditor(id);
        this.load();
        return null;
      }
      etag = current.etag;
    }
  }

  closeEditor(id) {
    this.editing = null;
    this.editor.hidden = true;
    this.editor.replaceChildren();
    this.tbody.querySelector(`tr[data-task-id="${CSS.escape(id)}"] button`)?.focus();
  }
}

const shortTimeText = (iso) => shortTime(iso).textContent;
