/**
 * Turns a byte stream (a job's stdout or stderr) into masked log lines. UTF-8 characters split
 * across chunks are reassembled; a trailing partial line is emitted at end(); a very long line is
 * emitted in pieces of at most `maxLineChars`, never cutting a secret or a surrogate pair in two.
 */
import { StringDecoder } from 'node:string_decoder';
import { Masker, clean } from './masker.js';

export const MAX_LINE_CHARS = 32_768;

export class LineSplitter {
  private readonly decoder = new StringDecoder('utf8');
  private partial = '';

  constructor(
    private readonly emit: (line: string) => void,
    private readonly masker: Masker = new Masker([]),
    private readonly maxLineChars = MAX_LINE_CHARS,
  ) {}

  write(chunk: Buffer | string): void {
    const text = this.partial + (typeof chunk === 'string' ? chunk : this.decoder.write(chunk));
    let start = 0;
    for (let nl = text.indexOf('\n', start); nl !== -1; nl = text.indexOf('\n', start)) {
      this.line(text.slice(start, text.charCodeAt(nl - 1) === 13 && nl > start ? nl - 1 : nl));
      start = nl + 1;
    }
    this.partial = start === 0 ? text : text.slice(start);
    // A line with no end in sight: send what cannot be part of a secret, keep the tail.
    if (this.partial.length > this.maxLineChars + this.masker.longest) {
      const cut = this.masker.safeCut(this.partial, this.partial.length - this.masker.longest);
      if (cut > 0) {
        this.pieces(this.masker.mask(this.partial.slice(0, cut)));
        this.partial = this.partial.slice(cut);
      }
    }
  }

  /** The stream ended: flush a last line without newline. */
  end(): void {
    const rest = this.partial + this.decoder.end();
    this.partial = '';
    if (rest.length) this.line(rest);
  }

  private line(text: string): void {
    this.pieces(this.masker.mask(text));
  }

  private pieces(text: string): void {
    text = clean(text);
    if (text.length <= this.maxLineChars) return this.emit(text);
    for (let i = 0; i < text.length; ) {
      let end = Math.min(text.length, i + this.maxLineChars);
      const code = text.charCodeAt(end - 1);
      if (end < text.length && code >= 0xd800 && code <= 0xdbff) end--; // keep the pair together
      this.emit(text.slice(i, end));
      i = end;
    }
  }
}
