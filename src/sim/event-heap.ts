/** A binary min-heap of timed events; equal times come out in the order they went in. */
export interface TimedEvent {
  t: number;
  seq: number;
}

export class EventHeap<E extends TimedEvent> {
  private a: E[] = [];
  private seq = 0;

  get size(): number {
    return this.a.length;
  }

  peek(): E | undefined {
    return this.a[0];
  }

  push(e: E extends unknown ? Omit<E, 'seq'> : never): void {
    const item = { ...e, seq: this.seq++ } as E;
    const a = this.a;
    let i = a.push(item) - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(item, a[p]!)) break;
      a[i] = a[p]!;
      i = p;
    }
    a[i] = item;
  }

  pop(): E | undefined {
    const a = this.a;
    const top = a[0];
    const last = a.pop();
    if (a.length === 0 || last === undefined) return top;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= a.length) break;
      const r = l + 1;
      const c = r < a.length && before(a[r]!, a[l]!) ? r : l;
      if (!before(a[c]!, last)) break;
      a[i] = a[c]!;
      i = c;
    }
    a[i] = last;
    return top;
  }
}

const before = (x: TimedEvent, y: TimedEvent) => x.t < y.t || (x.t === y.t && x.seq < y.seq);
