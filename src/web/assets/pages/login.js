// @ts-check
/** Sign-in: the admin token is checked against the API and kept in sessionStorage only. */
import { h } from '../lib/dom.js';
import { auth, ApiError } from '../lib/api.js';

/** @param {HTMLElement} root @param {any} route @param {import('../app.js').App} app */
export function mount(root, route, app) {
  app.setTitle('Sign in');
  const input = h('input', {
    id: 'token',
    name: 'token',
    type: 'password',
    class: 'input',
    autocomplete: 'current-password',
    spellcheck: 'false',
    required: true,
    'aria-describedby': 'token-hint',
  });
  const error = h('p', { class: 'form-error', id: 'login-error', role: 'alert', hidden: true });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary btn-block' }, 'Sign in');
  const notice = route.notice
    ? h('p', { class: route.noticeKind === 'error' ? 'notice notice-error' : 'notice', role: route.noticeKind === 'error' ? 'alert' : 'status', 'data-testid': 'login-notice' }, route.notice)
    : null;

  /** @param {SubmitEvent} e */
  const onSubmit = async (e) => {
    e.preventDefault();
    const token = input.value.trim();
    error.hidden = true;
    if (!token) return showError('Enter the admin token.');
    submit.disabled = true;
    submit.textContent = 'Signing in…';
    try {
      await app.api.get('pools', { token });
      auth.set(token);
      app.signedIn(route.query.get('next') ?? undefined);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) showError(`That token was not accepted: ${err.message}.`);
      else if (err instanceof ApiError && err.status === 403) showError('That is not an admin token (registration and runner tokens cannot use the dashboard).');
      else showError(err instanceof Error ? err.message : String(err));
    } finally {
      submit.disabled = false;
      submit.textContent = 'Sign in';
    }
  };
  /** @param {string} message */
  const showError = (message) => {
    error.textContent = message;
    error.hidden = false;
    input.setAttribute('aria-invalid', 'true');
    input.focus();
    input.select();
  };

  root.append(
    h(
      'div',
      { class: 'login' },
      h(
        'form',
        { class: 'login-card card', onsubmit: onSubmit, 'aria-labelledby': 'login-title', novalidate: true },
        h('div', { class: 'login-brand' }, h('span', { class: 'brand-mark', 'aria-hidden': 'true' }), 'runyard'),
        h('h1', { id: 'login-title', class: 'login-title', tabindex: '-1' }, 'Sign in to the dashboard'),
        notice,
        h('label', { for: 'token', class: 'label' }, 'Admin token'),
        input,
        h(
          'p',
          { id: 'token-hint', class: 'hint' },
          'Printed once by ',
          h('code', null, 'runyard up'),
          ' on its first start and saved to ',
          h('code', null, '.runyard/admin-token'),
          '. It is kept in this browser tab only.',
        ),
        error,
        submit,
      ),
    ),
  );
  input.focus();
  return { destroy() {} };
}
