// The queue at a glance: the jobs per status, the oldest pending job and how long it has waited,
// and jobs submitted / completed / failed per hour over the last 24 hours as a bar chart. Every
// figure is the service's (GET /api/v1/jobs/overview, counted by the database); the page reads it
// again when jobs change (at most every few seconds) and once a minute.

import { JOB_STATUSES, h, fmtDuration, count, num, timeEl, Page } from './core.js';
import { barChart } from './chart.js';

const HOURS = 24;
const BUCKET_SECS = 3600;
const SERIES = [
  { key: 'submitted', label: 'Submitted' },
  { key: 'completed', label: 'Completed' },
  { key: 'failed', label: 'Failed' },
];
const STATUS_LABELS = { pending: 'Pending', running: 'Running', completed: 'Completed', failed: 'Failed', cancelled: 'Cancelled' };

export class OverviewPage extends Page {
  get title() {
    return 'Overview';
  }

  render(main) {
    this.figures = h('ul', { class: 'figures', id: 'overview-counts', 'aria-label': 'Jobs per status' }, h('li', { class: 'muted' }, 'Loading…'));
    this.oldest = h('div', { id: 'overview-oldest' }, h('p', { class: 'muted' }, 'Loading…'));
    this.chart = h('div', { id: 'overview-chart-box' }, h('p', { class: 'muted' }, 'Loading…'));
    this.problem = h('div', { class: 'form-error', role: 'alert', hidden: true });
    main.replaceChildren(
      this.head('Overview', 'The queue at a glance. It updates as jobs change.', h('button', { type: 'button', class: 'btn btn-secondary', onclick: () => this.load() }, 'Refresh')),
      this.problem,
      h('section', { class: 'card', 'aria-labelledby': 'overview-counts-title' }, h('div', { class: 'card-head' }, h('h2', { id: 'overview-counts-title' }, 'Jobs by status'), (this.total = h('span', { class: 'list-total', id: 'overview-total' }))), this.figures),
      h('section', { class: 'card', 'aria-labelledby': 'overview-oldest-title' }, h('h2', { id: 'overview-oldest-title' }, 'Oldest pending job'), this.oldest),
      h('section', { class: 'card', 'aria-labelledby': 'overview-chart-title' }, h('h2', { id: 'overview-chart-title' }, `Throughput, last ${HOURS} hours`), this.chart),
    );
    // The chart is drawn for the width it has: again when that changes (a turned phone).
    this.resize = new ResizeObserver(() => {
      const w = Math.round(this.chart.clientWidth);
      if (this.data && Math.abs(w - (this.chartWidth ?? 0)) > 8) this.drawChart();
    });
    this.resize.observe(this.chart);
    this.load();
    this.every(() => this.load(), 60_000);
    this.every(() => this.tick(), 1000);
  }

  refresh() {
    this.load();
  }

  dispose() {
    this.resize?.disconnect();
    super.dispose();
  }

  onEvent(evt) {
    if (String(evt.event ?? '').startsWith('job_') && evt.event !== 'job_output' && evt.event !== 'job_progress') this.throttled('reload', () => this.load(), 3000);
  }

  async load() {
    try {
      const data = await this.api(`/api/v1/jobs/overview?hours=${HOURS}&bucket_secs=${BUCKET_SECS}`);
      if (!this.alive() || !data) return;
      this.loadedAt = Date.now();
      this.data = data;
      this.problem.hidden = true;
      this.show(data);
    } catch (err) {
      if (err?.name === 'AbortError' || !this.alive()) return;
      this.problem.textContent = `Could not load the overview: ${err?.message ?? err}`;
      this.problem.hidden = false;
    }
  }

  show(data) {
    const counts = data.counts ?? {};
    this.total.textContent = count(data.total ?? 0, 'job');
    this.total.dataset.total = String(data.total ?? 0);
    this.figures.replaceChildren(
      ...JOB_STATUSES.map((st) =>
        h(
          'li',
          { class: `figure figure-${st}`, 'data-status': st },
          h('a', { href: `/console/jobs?status=${st}`, 'data-link': '', 'aria-label': `${count(counts[st] ?? 0, 'job')} ${st}` }, h('span', { class: 'figure-value', 'data-value': String(counts[st] ?? 0) }, num(counts[st] ?? 0)), h('span', { class: 'figure-label' }, STATUS_LABELS[st])),
        ),
      ),
    );

    const o = data.oldest_pending;
    if (!o) {
      this.oldest.replaceChildren(h('p', { class: 'muted', id: 'overview-oldest-none' }, 'No job is waiting for an agent.'));
    } else {
      this.waiting = h('strong', { id: 'overview-waiting', 'data-secs': String(o.waiting_secs ?? 0) }, fmtDuration((o.waiting_secs ?? 0) * 1000));
      this.oldest.replaceChildren(
        h(
          'p',
          { class: 'oldest' },
          h('a', { href: `/console/jobs/${encodeURIComponent(o.id)}`, 'data-link': '', id: 'overview-oldest-link', 'data-job-id': o.id }, o.name),
          ' has waited ',
          this.waiting,
          ' (submitted ',
          timeEl(o.created_at),
          ').',
        ),
      );
    }

    this.drawChart();
  }

  drawChart() {
    const data = this.data;
    const buckets = data.series ?? [];
    const sums = Object.fromEntries(SERIES.map((se) => [se.key, buckets.reduce((a, b) => a + (Number(b[se.key]) || 0), 0)]));
    const summary = `In the last ${HOURS} hours: ${num(sums.submitted)} submitted, ${num(sums.completed)} completed, ${num(sums.failed)} failed.`;
    this.chartWidth = Math.round(this.chart.clientWidth) || 760;
    const open = this.chart.querySelector('details')?.open ?? false;
    this.chart.replaceChildren(
      barChart({ id: 'overview-chart', title: `Jobs submitted, completed and failed per hour, last ${HOURS} hours`, summary, buckets, series: SERIES, bucketSecs: data.bucket_secs ?? BUCKET_SECS, width: this.chartWidth }),
    );
    const details = this.chart.querySelector('details');
    if (details) details.open = open;
  }

  /** The oldest job's waiting time goes on between reads. */
  tick() {
    if (!this.waiting?.isConnected || !this.loadedAt) return;
    const secs = Number(this.waiting.dataset.secs) + (Date.now() - this.loadedAt) / 1000;
    const text = fmtDuration(secs * 1000);
    if (this.waiting.textContent !== text) this.waiting.textContent = text;
  }
}
