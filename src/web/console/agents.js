import { h, fmtTime, ago, agoEl, tickAgo, percent, hasNumber, badge, shortId, table, syncRows, emptyRow, Page } from './core.js';

// Events after which the agents page reads the agents again (at most once a second).
export const AGENT_EVENTS = new Set(['job_claimed', 'job_completed', 'job_failed', 'job_released', 'job_progress', 'job_requeued', 'job_status_updated']);
// An agent not seen for this long is offline (the service's rule, applied here between reads).
export const AGENT_ONLINE_MS = 120_000;

// ----- agents --------------------------------------------------------------------------------

/** The agent's state now: the service's answer, or offline once its last heartbeat is too old. */
export function agentHealth(status, seen) {
  const t = new Date(seen).getTime();
  if (status !== 'offline' && Number.isFinite(t) && Date.now() - t > AGENT_ONLINE_MS) return 'offline';
  return status || 'offline';
}

export const HEALTH_TITLES = { active: 'Online, running jobs', idle: 'Online, waiting for jobs', offline: 'Not seen for two minutes or more' };

export function healthBadge(status, seen) {
  const now = agentHealth(status, seen);
  const el = badge(now);
  el.classList.add('agent-health');
  if (HEALTH_TITLES[now]) el.title = HEALTH_TITLES[now];
  el.dataset.status = status ?? '';
  el.dataset.seen = seen ?? '';
  el.dataset.shown = now;
  return el;
}

export class AgentsPage extends Page {
  get title() {
    return 'Agents';
  }

  render(main) {
    this.tbody = h('tbody', { id: 'agents-body' }, emptyRow(6, 'Loading…'));
    this.summary = h('p', { class: 'muted', id: 'agents-summary', 'aria-live': 'polite' });
    main.replaceChildren(
      this.head(
        'Agents',
        'Workers that run jobs (kyros agent, or any client with a jobs:claim key). The list updates live.',
        h('button', { type: 'button', class: 'btn btn-secondary', onclick: () => this.load() }, 'Refresh'),
      ),
      h(
        'section',
        { class: 'card', 'aria-labelledby': 'agents-title' },
        h('h2', { id: 'agents-title', class: 'visually-hidden' }, 'Agent list'),
        this.summary,
        table(['Agent', 'Status', 'Labels', 'Runs', 'Last seen', 'Current jobs'], this.tbody, 'Agents'),
        h('p', { class: 'hint' }, 'Online means seen within the last two minutes. Create agent keys (scope jobs:claim) on the ', h('a', { href: '/console/keys', 'data-link': '' }, 'API keys'), ' page.'),
      ),
    );
    this.load();
    this.every(() => this.load(), 30_000);
    this.every(() => this.tick(), 1000);
  }

  refresh() {
    this.load();
  }

  onEvent(evt) {
    if (AGENT_EVENTS.has(evt.event)) this.throttled('reload', () => this.load(), 1000);
  }

  /** Once a second: "last seen" and the health badges (an agent that stops goes offline). */
  tick() {
    tickAgo(this.tbody);
    for (const b of this.tbody.querySelectorAll('.agent-health')) {
      if (agentHealth(b.dataset.status, b.dataset.seen) !== b.dataset.shown) b.replaceWith(healthBadge(b.dataset.status, b.dataset.seen));
    }
  }

  async load() {
    try {
      const res = await this.api('/api/v1/agents?pageSize=100');
      if (!this.alive()) return;
      const agents = res?.agents ?? [];
      const total = res?.total ?? agents.length;
      this.summary.textContent = `${total} agent${total === 1 ? '' : 's'}`;
      syncRows(this.tbody, agents, {
        key: (a) => a.id,
        // Not lastHeartbeatAt (it changes with every heartbeat): that is set in place below.
        sig: (a) =>
          JSON.stringify([a.name, a.status, a.labels, a.version, a.host, a.runsCompleted, a.runsFailed, a.successRate, (a.currentJobs ?? []).map((j) => [j.id, j.name, j.attempt, j.progress])]),
        empty: () => emptyRow(6, 'No agent has connected yet.'),
        row: (a) => this.row(a),
      });
      for (const a of agents) {
        const tr = this.tbody.querySelector(`tr[data-agent-id="${CSS.escape(String(a.id))}"]`);
        if (!tr) continue;
        const seen = tr.querySelector('.agent-seen');
        if (seen && a.lastHeartbeatAt && seen.getAttribute('datetime') !== a.lastHeartbeatAt) {
          seen.setAttribute('datetime', a.lastHeartbeatAt);
          seen.title = fmtTime(a.lastHeartbeatAt);
          seen.textContent = ago(a.lastHeartbeatAt);
        }
        const health = tr.querySelector('.agent-health');
        if (health && health.dataset.seen !== a.lastHeartbeatAt) health.replaceWith(healthBadge(a.status, a.lastHeartbeatAt));
      }
    } catch (err) {
      if (err?.name === 'AbortError' || !this.alive()) return;
      this.tbody.replaceChildren(emptyRow(6, `Could not load the agents: ${err.message}`));
    }
  }

  row(a) {
    const about = [a.version ? `version ${a.version}` : null, a.host ? `on ${a.host}` : null].filter(Boolean).join(' ');
    const finished = (a.runsCompleted ?? 0) + (a.runsFailed ?? 0);
    const jobs = a.currentJobs ?? (a.currentJob ? [a.currentJob] : []);
    return h(
      'tr',
      { 'data-agent-id': a.id, 'data-agent-name': a.name },
      h(
        'td',
        { class: 'agent-cell' },
        h('strong', { class: 'agent-name' }, a.name),
        about ? h('span', { class: 'agent-about muted' }, about) : null,
        h('code', { class: 'muted agent-id', title: a.id }, shortId(a.id)),
      ),
      h('td', { class: 'agent-status' }, healthBadge(a.status, a.lastHeartbeatAt)),
      h('td', { class: 'agent-labels' }, a.labels?.length ? h('span', { class: 'labels' }, a.labels.map((l) => h('code', { class: 'label' }, l))) : h('span', { class: 'muted' }, '—')),
      h(
        'td',
        { class: 'agent-runs nowrap' },
        h('span', { class: 'agent-runs-count' }, `${a.runsCompleted ?? 0} completed · ${a.runsFailed ?? 0} failed`),
        h('span', { class: 'agent-rate muted' }, finished && hasNumber(a.successRate) ? `${percent(a.successRate)} succeeded` : 'no finished runs'),
        a.lastRunAt ? h('span', { class: 'muted agent-last-run' }, 'last run ', agoEl(a.lastRunAt)) : null,
      ),
      h('td', { class: 'nowrap' }, agoEl(a.lastHeartbeatAt, { class: 'agent-seen' })),
      h(
        'td',
        { class: 'agent-jobs' },
        jobs.length
          ? h(
              'ul',
              { class: 'agent-job-list' },
              jobs.map((j) =>
                h(
                  'li',
                  { 'data-job-id': j.id },
                  h('a', { href: `/console/jobs/${encodeURIComponent(j.id)}`, 'data-link': '' }, j.name),
                  h('span', { class: 'muted' }, ` run ${j.attempt}`),
                  hasNumber(j.progress)
                    ? h('span', { class: 'progress-line' }, h('progress', { max: '1', value: String(Math.max(0, Math.min(1, Number(j.progress)))), 'aria-label': `Progress of ${j.name}` }), percent(j.progress))
                    : null,
                ),
              ),
            )
          : h('span', { class: 'muted' }, 'none'),
      ),
    );
  }
}
