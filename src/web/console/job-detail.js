import { $, h, fmtTime, timeEl, fmtDuration, agoEl, tickAgo, percent, hasNumber, badge, shortId, compactJson, confirmButton, notify, rateLimit, ApiError, alertArea, Page, navigate } from './core.js';
import { jobActions, statusView, leaseExpired, heldByAgent, runLabel, FINISHED, jobPath } from './jobs.js';

export const EVENT_LABELS = {
  job_created: 'Created',
  job_claimed: 'Claimed by an agent',
  job_status_updated: 'Status changed',
  job_completed: 'Completed',
  job_failed: 'Failed',
  job_requeued: 'Returned to the queue',
  job_released: 'Given back by its agent',
  job_progress: 'Progress',
  job_output: 'Output',
  job_deleted: 'Deleted',
};

// Events that come with every heartbeat or batch of output lines: the job page shows what they
// carry (progress, lease, output) in place, not as entries of its event list.
export const QUIET_EVENTS = new Set(['job_output', 'job_progress']);

export function describeEvent(evt) {
  const parts = [];
  if (evt.event === 'job_status_updated' && evt.old_status && evt.new_status) parts.push(`${evt.old_status} → ${evt.new_status}`);
  else if (evt.job?.status) parts.push(`status ${evt.job.status}`);
  const agent = evt.agent_name ?? (evt.event === 'job_claimed' ? evt.job?.agent_name : null);
  if (agent) parts.push(`agent ${agent}`);
  else if (evt.agent_id) parts.push(`agent ${shortId(evt.agent_id)}`);
  if (evt.reason) parts.push(String(evt.reason));
  if (evt.event === 'job_failed' && evt.job?.error) {
    const [first, ...more] = String(evt.job.error).split('\n');
    parts.push(more.length ? `${first} …` : first);
  }
  if ((evt.event === 'job_failed' || evt.event === 'job_completed') && hasNumber(evt.job?.exit_code)) parts.push(`exit code ${evt.job.exit_code}`);
  if (evt.run_id) parts.push(`run ${String(evt.run_id).split(':').pop()}`);
  return parts.join(' · ');
}

export const OUTPUT_PAGE = 5000;

/** One line of a terminal panel: a text node (markup in the output stays text), its stream marked. */
export function terminalLine(stream, text, attrs = {}) {
  const kind = stream === 'stderr' || stream === 'system' ? stream : 'stdout';
  return h(
    'div',
    { class: `term-line term-${kind}`, 'data-stream': kind, ...attrs },
    h('span', { class: 'term-mark' }, kind === 'stderr' ? 'err' : kind === 'system' ? 'sys' : ''),
    h('span', { class: 'term-text' }, String(text ?? '')),
  );
}

/**
 * A job's output as a terminal: every page of GET …/output first, then the live `job_output`
 * events appended in sequence order. A batch that does not follow the last line shown (events
 * missed, e.g. while reconnecting) makes it read the API again from that line.
 */
export class JobOutput {
  constructor(page, jobId) {
    this.page = page;
    this.jobId = jobId;
    this.lines = []; // {seq, attempt, stream, at, line}, in order
    this.lastSeq = 0;
    this.lastAttempt = null;
    this.loading = false;
    this.again = false;
    this.follow = true;
    this.empty = h('p', { class: 'term-empty', id: 'job-output-empty' }, 'No output yet.');
    this.screen = h(
      'div',
      { id: 'job-output', class: 'terminal', role: 'log', 'aria-live': 'off', 'aria-labelledby': 'job-output-title', tabindex: '0' },
      this.empty,
    );
    this.screen.addEventListener('scroll', () => this.onScroll(), { passive: true });
    this.truncated = h('p', { class: 'output-truncated', id: 'job-output-truncated', role: 'status', hidden: true }, 'The output reached its size limit: later lines were dropped.');
    this.problem = h('div', { class: 'form-error', role: 'alert', hidden: true });
    this.count = h('span', { class: 'muted', id: 'job-output-count' }, '0 lines');
    this.followBox = h('input', { type: 'checkbox', id: 'job-output-follow', checked: true, onchange: (e) => this.setFollow(e.target.checked) });
    this.download = h('button', { type: 'button', class: 'btn btn-secondary btn-small', id: 'job-output-download', onclick: () => this.save() }, 'Download');
    this.el = h(
      'section',
      { class: 'card', id: 'job-output-card', 'aria-labelledby': 'job-output-title' },
      h(
        'div',
        { class: 'card-head' },
        h('h2', { id: 'job-output-title' }, 'Output'),
        h('div', { class: 'actions' }, this.count, h('label', { class: 'check', for: 'job-output-follow' }, this.followBox, 'Follow'), this.download),
      ),
      this.problem,
      this.truncated,
      this.screen,
    );
  }

  /** Reads the lines after the last one shown, page by page, to the end. */
  async load() {
    if (this.loading) {
      this.again = true;
      return;
    }
    this.loading = true;
    this.download.disabled = true;
    try {
      do {
        this.again = false;
        for (;;) {
          const after = this.lastSeq;
          const res = await this.page.api(`/api/v1/jobs/${encodeURIComponent(this.jobId)}/output?after=${after}&limit=${OUTPUT_PAGE}`);
          if (!this.page.alive()) return;
          if (res?.truncated) this.truncated.hidden = false;
          const lines = res?.lines ?? [];
          this.add(lines, { fromApi: true });
          if (lines.length < OUTPUT_PAGE || this.lastSeq <= after) break;
        }
      } while (this.again);
      this.problem.hidden = true;
    } catch (err) {
      if (err?.name === 'AbortError' || !this.page.alive()) return;
      this.problem.textContent = `The output could not be read: ${err?.message ?? err}`;
      this.problem.hidden = false;
    } finally {
      this.loading = false;
      this.download.disabled = false;
    }
  }

  /** A `job_output` event: its lines, when they follow the last one shown; else a read. */
  onEvent(evt) {
    if (evt.truncated) this.truncated.hidden = false;
    this.add(evt.lines ?? [], { fromApi: false });
  }

  add(lines, { fromApi }) {
    const sorted = lines.filter((l) => Number.isFinite(Number(l?.seq))).sort((a, b) => Number(a.seq) - Number(b.seq));
    const frag = document.createDocumentFragment();
    let gap = false;
    for (const l of sorted) {
      const seq = Number(l.seq);
      if (seq <= this.lastSeq) continue; // seen already (history and live overlap)
      if (!fromApi && seq !== this.lastSeq + 1) {
        gap = true;
        break;
      }
      if (l.attempt !== this.lastAttempt) {
        frag.append(h('div', { class: 'term-run', 'data-attempt': String(l.attempt ?? '') }, `── Run ${l.attempt ?? '?'} ──`));
        this.lastAttempt = l.attempt;
      }
      this.lastSeq = seq;
      this.lines.push(l);
      frag.append(terminalLine(l.stream, l.line, { 'data-seq': String(seq), title: `${l.stream === 'stderr' ? 'stderr' : l.stream === 'system' ? 'service' : 'stdout'} · ${fmtTime(l.at)}` }));
    }
    if (frag.childNodes.length) {
      this.empty.hidden = true;
      this.screen.append(frag);
      const n = this.lines.length;
      this.count.textContent = `${n} line${n === 1 ? '' : 's'}`;
      if (this.follow) this.scrollToEnd();
    }
    if (gap) this.load();
  }

  setFollow(on) {
    this.follow = on;
    this.followBox.checked = on;
    if (on) this.scrollToEnd();
  }

  scrollToEnd() {
    this.screen.scrollTop = this.screen.scrollHeight;
  }

  /** Scrolling up stops following; scrolling back to the end follows again. */
  onScroll() {
    const atEnd = this.screen.scrollHeight - this.screen.scrollTop - this.screen.clientHeight < 4;
    if (atEnd !== this.follow) this.setFollow(atEnd);
  }

  /** The whole output as a .txt file (a Blob behind an object URL, no script). */
  save() {
    const text = this.lines.map((l) => `${l.line}\n`).join('');
    const url = URL.createObjectURL(new Blob([text], { type: 'text/plain;charset=utf-8' }));
    const a = h('a', { href: url, download: `job-${this.jobId}-output.txt`, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 30_000);
  }
}

/** What the job page's details show (not the run's live fields, which change with every heartbeat). */
export const detailSig = (j) =>
  JSON.stringify([j.status, j.name, j.description, j.priority, j.metadata, j.requires, j.result, j.error, j.created_at, j.started_at, j.completed_at]);

/** A job's result: the last lines of the output (`output_tail`, as `kyros agent` reports) as a
 * terminal, any other JSON pretty-printed. */
export function resultView(result) {
  if (typeof result === 'string') return [h('pre', { id: 'job-result' }, result)];
  if (result && typeof result === 'object' && !Array.isArray(result) && Array.isArray(result.output_tail)) {
    const { output_tail: tail, ...rest } = result;
    const out = [
      h(
        'div',
        { id: 'job-result', class: 'terminal terminal-short', role: 'group', 'aria-label': 'Last lines of the output' },
        tail.length ? tail.map((line) => terminalLine('stdout', typeof line === 'string' ? line : compactJson(line))) : h('p', { class: 'term-empty' }, 'No output.'),
      ),
    ];
    const other = Object.keys(rest).filter((k) => k !== 'exit_code');
    if (other.length) out.push(h('pre', { id: 'job-result-data' }, JSON.stringify(rest, null, 2)));
    return out;
  }
  return [h('pre', { id: 'job-result' }, JSON.stringify(result, null, 2))];
}

export class JobDetailPage extends Page {
  get title() {
    return 'Job';
  }

  render(main) {
    this.id = this.params[0];
    this.job = null;
    this.beatAt = null; // the newest heartbeat (or claim) of the job we know of
    this.eventIds = new Set();
    this.alerts = alertArea();
    this.deleted = false;
    this.deletedNote = h('div', { class: 'banner-deleted', id: 'job-deleted', role: 'alert', hidden: true }, 'This job was deleted. What you see is how it was; nothing here can be changed any more.');
    this.body = h('div', null, h('p', { class: 'muted' }, 'Loading the job…'));
    this.events = h('ol', { id: 'job-events', class: 'timeline', 'aria-live': 'polite', 'aria-relevant': 'additions' });
    this.noEvents = h('p', { class: 'muted', id: 'job-events-empty' }, 'No events yet.');
    this.run = this.runCard();
    this.output = new JobOutput(this, this.id);
    this.output.el.hidden = true;
    main.replaceChildren(
      h('p', { class: 'breadcrumb' }, h('a', { href: '/console/jobs', 'data-link': '' }, '← All jobs')),
      this.alerts,
      this.body,
      this.run.el,
      this.output.el,
      h('section', { class: 'card', 'aria-labelledby': 'job-events-title' }, h('h2', { id: 'job-events-title' }, 'Events'), this.noEvents, this.events),
    );
    this.load(true);
    this.every(() => this.tick(), 1000);
  }

  focusTarget() {
    return $('#main h1') ?? $('#main');
  }

  jobIds() {
    return [this.id];
  }

  refresh() {
    this.load(false);
  }

  async load(first) {
    try {
      const [job, history] = await Promise.all([
        this.api(`/api/v1/jobs/${encodeURIComponent(this.id)}`),
        this.api(`/api/v1/orchestrator/events?lifecycle=true&task_id=${encodeURIComponent(this.id)}`).catch((err) => {
          if (err?.name === 'AbortError') throw err;
          return { events: [], error: err };
        }),
      ]);
      if (!this.alive()) return;
      for (const evt of [...(history.events ?? [])].sort((a, b) => Number(a.id) - Number(b.id))) {
        this.noteBeat(evt);
        if (!QUIET_EVENTS.has(evt.event)) this.addEvent(evt);
      }
      if (first) this.show(job, true);
      else this.update(job);
      if (history.error) this.alerts.show(new Error(`The event history could not be read: ${history.error.message}`));
      this.output.el.hidden = false;
      this.output.load();
    } catch (err) {
      if (err?.name === 'AbortError' || !this.alive()) return;
      if (err instanceof ApiError && err.status === 404) {
        this.setTitle('Job not found');
        this.run.el.hidden = true;
        this.output.el.hidden = true;
        this.body.replaceChildren(this.head('Job not found', 'This job does not exist, was deleted, or belongs to someone else.'));
        if (first) $('#main h1')?.focus();
        return;
      }
      this.loadError(err, this.body);
    }
  }

  /** A newer version of the job: the details drawn again when they changed, the run in place. */
  update(job) {
    if (this.job && new Date(job.updated_at) < new Date(this.job.updated_at)) return; // overtaken
    if (!this.job || detailSig(job) !== detailSig(this.job)) this.show(job, false);
    else {
      this.job = job;
      this.updateRun(job);
    }
  }

  show(job, focus) {
    this.job = job;
    this.setTitle(`Job “${job.name}”`);
    const requires = job.requires?.length
      ? h('span', { id: 'job-requires', class: 'labels' }, job.requires.map((l) => h('code', { class: 'label' }, l)))
      : h('span', { id: 'job-requires', class: 'muted' }, 'any agent');
    const props = [
      ['Status', h('span', { id: 'job-status' }, statusView(job))],
      ['ID', h('code', null, job.id)],
      job.owner_name ? ['Owner', h('span', { id: 'job-owner' }, job.owner_name)] : null,
      ['Priority', String(job.priority ?? 0)],
      ['Requires', requires],
      ['Created', timeEl(job.created_at)],
      ['Started', timeEl(job.started_at)],
      ['Finished', timeEl(job.completed_at)],
    ];
    const dl = h('dl', { class: 'props' }, props.filter(Boolean).map(([k, v]) => [h('dt', null, k), h('dd', null, v)]));
    const sections = [];
    if (job.description) sections.push(h('h3', null, 'Description'), h('p', { id: 'job-description-text' }, job.description));
    if (job.metadata) sections.push(h('h3', null, 'Metadata'), h('pre', null, JSON.stringify(job.metadata, null, 2)));
    if (job.result !== null && job.result !== undefined) sections.push(h('h3', null, 'Result'), resultView(job.result));
    if (job.error) sections.push(h('h3', null, 'Error'), h('pre', { id: 'job-error' }, job.error));
    const actions = jobActions(job, (updated) => this.update(updated), this.alerts, { onRerun: (created) => navigate(`/console/jobs/${encodeURIComponent(created.id)}`) });
    actions.id = 'job-actions';
    actions.append(
      confirmButton({
        label: 'Delete',
        ariaLabel: `Delete job ${job.name}`,
        // Asked when the question opens: the job may have been claimed since the page drew it.
        question: () =>
          heldByAgent(this.job ?? job)
            ? `An agent is running this job; deleting it stops the agent's work. Delete it for good?`
            : 'Delete this job for good?',
        confirmLabel: 'Delete job',
        keepLabel: 'Keep job',
        onConfirm: async () => {
          try {
            await this.api(jobPath(job.id), { method: 'DELETE' });
            this.deletedByMe = true;
            notify(`Job “${job.name}” deleted.`, { keep: true });
            navigate('/console/jobs');
          } catch (err) {
            this.alerts.show(err);
          }
        },
      }),
    );
    const hadFocus = this.body.contains(document.activeElement) && document.activeElement.tagName === 'H1';
    this.body.replaceChildren(
      h(
        'div',
        { class: 'page-head' },
        h('div', null, h('h1', { tabindex: '-1', id: 'job-title' }, job.name), h('p', { class: 'muted' }, 'Job details. Changes appear here live.')),
        actions,
      ),
      h('section', { class: 'card job-card', 'aria-labelledby': 'job-details-title' }, h('h2', { id: 'job-details-title', class: 'visually-hidden' }, 'Details'), dl, sections),
    );
    this.updateRun(job);
    if (this.deleted) this.markDeleted();
    if (focus || hadFocus) $('#job-title')?.focus();
    rateLimit.apply();
  }

  /** The job is gone (deleted here or elsewhere): said at the top, and nothing to press. */
  markDeleted() {
    this.deleted = true;
    if (!this.deletedNote.isConnected) this.body.before(this.deletedNote);
    this.deletedNote.hidden = false;
    for (const button of this.body.querySelectorAll('button')) button.disabled = true;
    const status = $('#job-status');
    if (status && !status.querySelector('.badge-deleted')) status.replaceChildren(badge('deleted', 'deleted'));
  }

  /** The run's card: built once, its fields changed in place (heartbeats come twice a second). */
  runCard() {
    const el = {
      agent: h('span', { id: 'job-agent' }, '—'),
      run: h('span', { id: 'job-run' }, '—'),
      retries: h('span', { id: 'job-retries' }, '0'),
      duration: h('span', { id: 'job-duration' }, '—'),
      progress: h('progress', { id: 'job-progress', max: '1', 'aria-labelledby': 'job-progress-label', 'aria-describedby': 'job-progress-text' }),
      progressText: h('span', { id: 'job-progress-text' }),
      lease: h('span', { id: 'job-lease' }, '—'),
      beat: h('span', { id: 'job-heartbeat' }, '—'),
      exit: h('span', { id: 'job-exit-code' }, '—'),
    };
    const prop = (key, label, ...value) => {
      const group = h('div', { class: 'prop', 'data-prop': key }, h('dt', { id: `job-${key}-label` }, label), h('dd', null, value));
      el[`${key}Row`] = group;
      return group;
    };
    el.el = h(
      'section',
      { class: 'card', id: 'job-run-card', 'aria-labelledby': 'job-run-title', hidden: true },
      h('h2', { id: 'job-run-title' }, 'Run'),
      h(
        'dl',
        { class: 'props' },
        prop('agent', 'Agent', el.agent),
        prop('run', 'Run', el.run),
        prop('retries', 'Retries', el.retries),
        prop('duration', 'Duration', el.duration),
        prop('progress', 'Progress', h('span', { class: 'progress-line' }, el.progress, el.progressText)),
        prop('lease', 'Lease until', el.lease),
        prop('heartbeat', 'Last heartbeat', el.beat),
        prop('exit', 'Exit code', el.exit),
      ),
    );
    return el;
  }

  /** A claim or heartbeat: the newest one is the "last heartbeat". */
  noteBeat(evt) {
    if (evt.event !== 'job_progress' && evt.event !== 'job_claimed') return;
    if (!evt.timestamp) return;
    if (!this.beatAt || new Date(evt.timestamp) > new Date(this.beatAt)) this.beatAt = evt.timestamp;
  }

  updateRun(job) {
    const r = this.run;
    r.el.hidden = false;
    const running = job.status === 'running';
    r.agent.replaceChildren(job.agent_name ? h('strong', null, job.agent_name) : job.agent_id ? h('code', { title: job.agent_id }, `agent ${shortId(job.agent_id)}`) : h('span', { class: 'muted' }, 'none yet'));
    // "Run N" is the run the events call "run N"; Retries counts the runs before it.
    if (job.status === 'pending') r.run.textContent = job.attempt > 0 ? `Waiting for an agent (after ${job.attempt} run${job.attempt === 1 ? '' : 's'})` : 'Waiting for an agent';
    else r.run.textContent = runLabel(job) ?? '—';
    const retries = Number(job.attempts ?? 0);
    r.retries.textContent = String(retries);
    r.retriesRow.hidden = !(job.attempt > 0 || retries > 0);
    r.durationRow.hidden = !job.started_at;
    const hasProgress = hasNumber(job.progress);
    r.progressRow.hidden = !hasProgress && !running;
    if (hasProgress) {
      r.progress.value = Math.max(0, Math.min(1, Number(job.progress)));
      r.progressText.textContent = job.progress_message ? `${percent(job.progress)} · ${job.progress_message}` : percent(job.progress);
    } else {
      r.progress.removeAttribute('value'); // indeterminate: running, nothing reported
      r.progressText.textContent = 'Not reported';
    }
    r.leaseRow.hidden = !running;
    this.leaseShown = leaseExpired(job);
    r.lease.replaceChildren(
      ...[running && job.lease_expires_at ? timeEl(job.lease_expires_at) : '—', this.leaseShown ? h('span', { class: 'lease-expired' }, 'expired — waiting to be requeued') : null].filter(Boolean),
    );
    r.heartbeatRow.hidden = !this.beatAt && !running;
    const shown = r.beat.querySelector('time')?.getAttribute('datetime');
    if (this.beatAt && shown !== this.beatAt) r.beat.replaceChildren(agoEl(this.beatAt));
    else if (!this.beatAt) r.beat.replaceChildren(h('span', { class: 'muted' }, 'none yet'));
    r.exitRow.hidden = !hasNumber(job.exit_code);
    r.exit.textContent = hasNumber(job.exit_code) ? String(job.exit_code) : '—';
    this.tick();
  }

  /** Once a second: the running time and the relative times. */
  tick() {
    const job = this.job;
    if (!job) return;
    if (!this.deleted && leaseExpired(job) !== this.leaseShown) {
      const status = $('#job-status');
      if (status) status.replaceChildren(statusView(job));
      this.updateRun(job);
      return;
    }
    if (job.started_at) {
      const start = new Date(job.started_at).getTime();
      const end = job.completed_at ? new Date(job.completed_at).getTime() : job.status === 'running' ? Date.now() : NaN;
      const text = Number.isNaN(end) ? '—' : job.status === 'running' ? `${fmtDuration(end - start)} (running)` : fmtDuration(end - start);
      if (this.run.duration.textContent !== text) this.run.duration.textContent = text;
    }
    tickAgo(this.run.el);
  }

  addEvent(evt) {
    if (evt.id === undefined || this.eventIds.has(evt.id)) return;
    this.eventIds.add(evt.id);
    const item = h(
      'li',
      { 'data-event-id': String(evt.id), 'data-event': evt.event ?? '' },
      h('span', { class: 'event-name' }, EVENT_LABELS[evt.event] ?? String(evt.event ?? 'event')),
      ' ',
      h('code', { class: 'muted' }, String(evt.event ?? '')),
      timeEl(evt.timestamp),
      describeEvent(evt) ? h('span', { class: 'event-detail' }, describeEvent(evt)) : null,
    );
    // Keep the list in id order (live events can overtake the history answer).
    const after = [...this.events.children].find((li) => Number(li.dataset.eventId) > Number(evt.id));
    this.events.insertBefore(item, after ?? null);
    this.noEvents.hidden = true;
  }

  async onEvent(evt) {
    if (evt.task_id !== this.id) return;
    if (evt.event === 'job_output') {
      this.output.onEvent(evt);
      return;
    }
    this.noteBeat(evt);
    if (evt.event === 'job_progress') {
      // The heartbeat carries the job (new lease end, progress): nothing to read.
      if (evt.job) this.update(evt.job);
      else if (this.job) this.updateRun(this.job);
      return;
    }
    this.addEvent(evt);
    if (evt.event === 'job_deleted') {
      if (!this.deletedByMe) this.markDeleted();
      return;
    }
    if (this.deleted) return;
    try {
      const job = await this.api(`/api/v1/jobs/${encodeURIComponent(this.id)}`);
      if (!this.alive()) return;
      this.update(job);
      // The last lines may have been sent just before the end: make sure they are all here.
      if (FINISHED.has(job.status)) this.output.load();
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) this.markDeleted();
    }
  }
}
