// @ts-check
/** A modal confirmation on the native <dialog>: focus is trapped, Escape dismisses. */
import { h } from './dom.js';

/**
 * Resolves true when the user confirms. Focus starts on the safe choice.
 * @param {{title: string, body: string, confirm: string, dismiss?: string, danger?: boolean}} o
 * @returns {Promise<boolean>}
 */
export function confirmDialog(o) {
  return new Promise((resolve) => {
    const opener = document.activeElement;
    const dismiss = h('button', { type: 'button', class: 'btn', value: 'no', autofocus: true }, o.dismiss ?? 'Back');
    const confirm = h('button', { type: 'button', class: o.danger === false ? 'btn btn-primary' : 'btn btn-danger', value: 'yes' }, o.confirm);
    const titleId = `dlg-${Math.random().toString(36).slice(2)}`;
    const dialog = h(
      'dialog',
      { class: 'dialog', 'aria-labelledby': titleId, 'data-testid': 'confirm-dialog' },
      h('h2', { id: titleId, class: 'dialog-title' }, o.title),
      h('p', { class: 'dialog-body' }, o.body),
      h('div', { class: 'dialog-actions' }, dismiss, confirm),
    );
    let answer = false;
    dismiss.addEventListener('click', () => dialog.close());
    confirm.addEventListener('click', () => {
      answer = true;
      dialog.close();
    });
    dialog.addEventListener('close', () => {
      dialog.remove();
      if (opener instanceof HTMLElement && opener.isConnected) opener.focus();
      resolve(answer);
    });
    document.body.append(dialog);
    dialog.showModal();
    dismiss.focus();
  });
}
