/*
 * The EC2 query protocol's response side: `<ActionResponse xmlns=…>` documents whose lists are
 * `<item>` elements, and errors as `<Response><Errors><Error>…`.
 */
import { randomUUID } from 'node:crypto';

export const EC2_XMLNS = 'http://ec2.amazonaws.com/doc/2016-11-15/';

/** A value to render: objects become elements per key, arrays become `<item>` lists. */
export type XmlValue = string | number | boolean | undefined | null | XmlValue[] | { [k: string]: XmlValue };

const escape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

export function toXml(name: string, v: XmlValue): string {
  if (v === undefined || v === null) return '';
  if (Array.isArray(v)) return `<${name}>${v.map((i) => toXml('item', i)).join('')}</${name}>`;
  if (typeof v === 'object') return `<${name}>${Object.entries(v).map(([k, c]) => toXml(k, c)).join('')}</${name}>`;
  return `<${name}>${escape(String(v))}</${name}>`;
}

export function responseXml(action: string, body: Record<string, XmlValue>, requestId = randomUUID()): string {
  const inner = toXml('requestId', requestId) + Object.entries(body).map(([k, v]) => toXml(k, v)).join('');
  return `<?xml version="1.0" encoding="UTF-8"?>\n<${action}Response xmlns="${EC2_XMLNS}">${inner}</${action}Response>`;
}

export function errorXml(code: string, message: string, requestId = randomUUID()): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>${escape(code)}</Code><Message>${escape(message)}</Message></Error></Errors><RequestID>${requestId}</RequestID></Response>`;
}

/** An EC2 error: its code, message and HTTP status (400 client, 500/503 server). */
export class Ec2Error extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
    this.name = 'Ec2Error';
  }
}
