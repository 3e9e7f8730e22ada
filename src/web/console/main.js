import { APP, HOME, LOGIN, state, $, h, clearNotice, rateLimit, live, safeNext, loadMe, logout, Page, navigate, router } from './core.js';
import { oauthReturn, LoginPage } from './login.js';
import { JobsPage } from './jobs.js';
import { JobDetailPage } from './job-detail.js';
import { TasksPage } from './tasks.js';
import { AgentsPage } from './agents.js';
import { KeysPage } from './keys.js';
import { AccountPage } from './account.js';
import { UsersPage } from './users.js';
import { AuditPage } from './audit.js';
import { OverviewPage } from './overview.js';

// ----- other pages ---------------------------------------------------------------------------

class NotFoundPage extends Page {
  get title() {
    return 'Page not found';
  }

  render(main) {
    main.replaceChildren(this.head('Page not found', 'There is no console page at this address.'), h('p', null, h('a', { href: HOME, 'data-link': '' }, 'Go to the jobs')));
  }
}

class ForbiddenPage extends Page {
  get title() {
    return 'Not available';
  }

  render(main) {
    main.replaceChildren(this.head('Not available', 'This page is for administrators.'), h('p', null, h('a', { href: HOME, 'data-link': '' }, 'Go to the jobs')));
  }
}

// ---------------------------------------------------------------------------------------------
// Router and page chrome.

const ROUTES = [
  { re: /^\/console\/login$/, Page: LoginPage, public: true },
  { re: /^\/console\/overview$/, Page: OverviewPage, section: 'overview' },
  { re: /^\/console\/jobs$/, Page: JobsPage, section: 'jobs' },
  { re: /^\/console\/jobs\/([^/]+)$/, Page: JobDetailPage, section: 'jobs' },
  { re: /^\/console\/tasks$/, Page: TasksPage, section: 'tasks' },
  { re: /^\/console\/agents$/, Page: AgentsPage, section: 'agents' },
  { re: /^\/console\/keys$/, Page: KeysPage, section: 'keys' },
  { re: /^\/console\/account$/, Page: AccountPage, section: 'account' },
  { re: /^\/console\/admin\/users$/, Page: UsersPage, section: 'admin-users', admin: true },
  { re: /^\/console\/admin\/audit$/, Page: AuditPage, section: 'admin-audit', admin: true },
];

function updateChrome(section) {
  const me = state.me;
  $('#nav').hidden = !me;
  $('#session-box').hidden = !me;
  for (const li of document.querySelectorAll('#nav [data-admin]')) li.hidden = me?.role !== 'admin';
  for (const a of document.querySelectorAll('#nav a[data-section]')) {
    if (me && a.dataset.section === section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (me) {
    $('#whoami-name').textContent = me.username;
    $('#whoami-role').textContent = me.role;
  }
}

function route({ focus = true } = {}) {
  let path = location.pathname;
  if (path === '/console' || path === '/console/') {
    history.replaceState(null, '', HOME);
    path = HOME;
  } else if (path.length > 1 && path.endsWith('/')) {
    path = path.replace(/\/+$/, '');
  }
  let params = [];
  let match = null;
  for (const r of ROUTES) {
    const m = r.re.exec(path);
    if (m) {
      match = r;
      params = m.slice(1).map((p) => {
        try {
          return decodeURIComponent(p);
        } catch {
          return p;
        }
      });
      break;
    }
  }
  const query = new URLSearchParams(location.search);
  if (match && !match.public && !state.me) {
    history.replaceState(null, '', `${LOGIN}?next=${encodeURIComponent(location.pathname + location.search)}`);
    return route({ focus });
  }
  if (!match && !state.me) {
    history.replaceState(null, '', LOGIN);
    return route({ focus });
  }
  if (match?.public && state.me) {
    // Back from linking an identity: the account page completes it.
    const target = oauthReturn(query) ? `/console/account${location.search}` : safeNext(query.get('next'));
    history.replaceState(null, '', target);
    return route({ focus });
  }
  const Page = !match ? NotFoundPage : match.admin && state.me?.role !== 'admin' ? ForbiddenPage : match.Page;

  if (state.keepNotice) state.keepNotice = false;
  else clearNotice();
  state.page?.dispose();
  const page = new Page({ params, query });
  state.page = page;
  updateChrome(match?.section);
  const main = $('#main');
  main.replaceChildren();
  document.title = `${page.title} · ${APP}`;
  page.render(main);
  rateLimit.apply();
  live.follow(page.jobIds?.() ?? []);
  if (focus) (page.focusTarget?.() ?? main.querySelector('h1') ?? main).focus();
  else if (page instanceof LoginPage) page.focusTarget()?.focus();
}

/** Same-origin console links navigate inside the app (new tab / modified clicks keep working). */
function onLinkClick(event) {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  // Only the console's own links (data-link); in-page anchors such as the skip link stay native.
  const a = event.target.closest?.('a[href][data-link]');
  if (!a || a.target || a.hasAttribute('download')) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith('/console/') || url.pathname.startsWith('/console/assets/')) return;
  event.preventDefault();
  if (url.pathname + url.search === location.pathname + location.search) {
    route({ focus: true });
    return;
  }
  navigate(url.pathname + url.search);
}

async function boot() {
  router.route = route;
  document.addEventListener('click', onLinkClick);
  window.addEventListener('popstate', () => route({ focus: true }));
  $('#logout-button').addEventListener('click', logout);
  await loadMe();
  if (state.me) live.start();
  route({ focus: false });
}

boot();
