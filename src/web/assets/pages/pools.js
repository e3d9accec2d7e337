// @ts-check
/** Pools: configuration, live runners (warm, busy, …) and recent scale events of each pool. */
import { h, swap, badge, empty, field, throttle } from '../lib/dom.js';
import { duration, timeEl, count } from '../lib/format.js';
import { pageHeader, loader, staleNotice } from '../lib/page.js';

/** @param {HTMLElement} root @param {import('../app.js').Route} _route @param {import('../app.js').App} app */
export function mount(root, _route, app) {
  app.setTitle('Pools');
  const body = h('div', { class: 'page-body', 'aria-busy': 'true' }, h('p', { class: 'loading' }, 'Loading…'));
  const notice = staleNotice();
  root.append(h('div', { class: 'page' }, pageHeader('Pools', 'Runner configurations, their live runners and how they scaled.'), notice, body));

  const l = loader({
    body,
    notice,
    what: 'pools',
    fetch: async (signal) => {
      const [p, s, r, e] = await Promise.all([
        app.api.get('pools', { signal }),
        app.api.get('stats', { signal }),
        app.api.get('runners', { signal }),
        app.api.get('stats/scaling?limit=200', { signal }),
      ]);
      return { pools: p.pools, stats: s.pools, runners: r.runners, events: e.events };
    },
    render,
  });
  const refresh = throttle(() => void l.load(), 1000);
  void l.load();

  /** @param {{pools: any[], stats: any[], runners: any[], events: any[]}} d */
  function render(d) {
    body.removeAttribute('aria-busy');
    if (!d.pools.length) return swap(body, empty('No pools yet', ['Define pools in runyard.yaml or apply them with ', h('code', null, 'runyard pools apply -f pools.yaml'), '.']));
    swap(
      body,
      d.pools.map((p) =>
        poolCard(
          p,
          d.stats.find((s) => s.name === p.name),
          d.runners.filter((r) => r.pool === p.name),
          d.events.filter((e) => e.pool === p.name).slice(0, 8),
        ),
      ),
    );
  }

  return {
    change: () => refresh(),
    destroy() {
      refresh.cancel();
      l.destroy();
    },
  };
}

/** @param {any} p @param {any} stats @param {any[]} runners @param {any[]} events */
function poolCard(p, stats, runners, events) {
  const c = p.config;
  const by = p.runners ?? {};
  const live = Object.values(by).reduce((a, b) => a + Number(b), 0);
  const id = `pool-${p.name}`;
  return h(
    'section',
    { class: 'card pool-card', 'aria-labelledby': `${id}-title`, 'data-testid': `pool-${p.name}` },
    h(
      'div',
      { class: 'card-header' },
      h(
        'div',
        { class: 'pool-title' },
        h('h2', { id: `${id}-title`, class: 'card-title' }, p.name),
        h('span', { class: 'tag' }, c.provider),
        c.ephemeral ? h('span', { class: 'tag' }, 'ephemeral') : null,
        c.labels?.map((/** @type {string} */ lb) => h('span', { class: 'tag tag-label' }, lb)),
      ),
      h('span', { class: 'card-meta' }, 'from ', p.source, ' · updated ', timeEl(p.updatedAt)),
    ),
    h(
      'dl',
      { class: 'metrics' },
      metric('Queued', count(p.queued ?? 0)),
      metric('Running', count((stats?.running ?? 0) + (stats?.claimed ?? 0))),
      metric('Warm (idle)', `${by.idle ?? 0}`, `min ${c.minIdle}`),
      metric('Busy', `${by.busy ?? 0}`),
      metric('Starting', `${by.starting ?? 0}`),
      metric('Runners', `${live} / ${c.maxRunners}`, 'live / max'),
      metric('Free slots', count(stats?.freeSlots ?? 0), `${c.maxJobsPerRunner} per runner`),
    ),
    h(
      'div',
      { class: 'pool-grid' },
      h(
        'div',
        null,
        h('h3', { class: 'section-title' }, 'Configuration'),
        h(
          'dl',
          { class: 'fields fields-compact' },
          field('Jobs per runner', String(c.maxJobsPerRunner)),
          field('Warm runners (minIdle)', String(c.minIdle)),
          field('Max runners', String(c.maxRunners)),
          field('Idle timeout', duration(c.idleTimeout)),
          field('Max lifetime', duration(c.maxLifetime)),
          field('Job timeout', duration(c.jobTimeout)),
          field('Start timeout', duration(c.startTimeout)),
          c.class ? field('Class', c.class) : null,
          c.image ? field('Image', h('code', null, c.image)) : null,
          c.dynamicImages ? field('Dynamic images', c.dynamicImages === true ? 'any base' : h('code', null, c.dynamicImages.join(', '))) : null,
          c.distribution ? field('Distribution', h('code', null, c.distribution)) : null,
          field('Setup', c.setup?.length ? h('code', null, c.setup.join(' && ')) : 'none'),
          field('Env', Object.keys(c.env ?? {}).length ? Object.keys(c.env).join(', ') : 'none'),
          field('Config hash', h('code', null, p.configHash)),
        ),
      ),
      h(
        'div',
        null,
        h('h3', { class: 'section-title' }, 'Live runners ', h('a', { href: `#/runners?pool=${encodeURIComponent(p.name)}`, class: 'section-link' }, 'manage')),
        runners.length
          ? h(
              'ul',
              { class: 'mini-list' },
              runners.map((r) =>
                h(
                  'li',
                  null,
                  badge(r.state, r.stateReason ?? undefined),
                  h('span', { class: 'mini-name', title: r.id }, r.name),
                  h('span', { class: 'muted' }, `${r.activeJobs ?? 0}/${r.slots} jobs`),
                  h('span', { class: 'muted' }, 'up ', timeEl(r.createdAt, 'for')),
                ),
              ),
            )
          : empty('No live runners', c.minIdle ? 'Warm runners are starting.' : 'This pool scales to zero; a queued job starts one.'),
        h('h3', { class: 'section-title' }, 'Scale events'),
        events.length
          ? h('ol', { class: 'events' }, events.map(scaleEvent))
          : empty('No scaling activity yet'),
      ),
    ),
  );
}

/** @param {string} label @param {string} value @param {string} [sub] */
function metric(label, value, sub) {
  return h('div', { class: 'metric' }, h('dt', null, label), h('dd', null, h('span', { class: 'metric-value' }, value), sub ? h('span', { class: 'metric-sub' }, sub) : null));
}

/** @param {any} e */
function scaleEvent(e) {
  let what;
  if (e.kind === 'runner') {
    const verb = { starting: 'started', idle: 'registered', draining: 'draining', terminated: 'stopped', offline: 'went offline', disabled: 'disabled' }[e.toState] ?? e.toState ?? 'changed';
    what = [h('span', { class: 'mini-name', title: e.subject }, e.runnerName ?? e.subject.slice(0, 8)), ` ${verb}`];
  } else if (e.kind === 'pool') what = 'Pool configuration';
  else what = 'Scheduler';
  return h(
    'li',
    { class: `event event-${e.toState ?? e.kind}` },
    h('span', { class: 'event-dot', 'aria-hidden': 'true' }),
    h('div', { class: 'event-main' }, h('span', { class: 'event-what' }, what), e.reason ? h('span', { class: 'event-reason' }, ` — ${e.reason}`) : null),
    h('span', { class: 'event-time' }, timeEl(e.at)),
  );
}
