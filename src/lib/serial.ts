/**
 * Runs async work one piece at a time, in the order it was handed in; a failure is its caller's
 * and does not stop the pieces after it.
 */
export class Serial {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(fn);
    this.tail = run.catch(() => {});
    return run;
  }
}
