// The realtime gateway: one WebSocket per signed-in session, opened with a ticket from
// the API, kept open until `close`.
//
//   const gateway = new Gateway(api)   api: the session's `Api` (for tickets and sign-out)
//   gateway.connect(onEvent)           -> onEvent({op, type, data, seq}), and
//                                         {op: 'status', status, message} when it drops or
//                                         comes back, {op: 'resync'} when events were missed
//   gateway.send(frame)                -> sends a JSON op (e.g. typing) if connected
//   gateway.close()
//
// After a drop it reconnects with a fresh ticket (backoff doubling from 0.5 s to 15 s) and
// resumes from the last sequence number it saw. Close code 4010 means the session is gone:
// it calls `api.onSignedOut` and stays closed.

import { ApiError } from './api.js';

export class Gateway {
  constructor(api) {
    this.api = api;
    this.ws = null;
    this.lastSeq = 0;
    this.closed = false;
    this.onEvent = null;
    this.backoff = 500;
  }

  /** Opens the gateway and keeps it open (reconnecting with resume) until `close`. */
  connect(onEvent) {
    this.closed = false;
    this.onEvent = onEvent;
    this.backoff = 500;
    this.open();
  }

  async open() {
    if (this.closed) return;
    let ticket;
    try {
      ticket = await this.api.request('POST', '/api/v1/gateway/ticket', {});
    } catch (e) {
      this.onEvent({ op: 'status', status: 'offline', message: e.message });
      return this.retry();
    }
    const ws = new WebSocket(ticket.url);
    this.ws = ws;
    ws.onmessage = (m) => {
      let frame;
      try {
        frame = JSON.parse(m.data);
      } catch (e) {
        return;
      }
      if (frame.op === 'hello') {
        ws.send(JSON.stringify({ op: 'resume', seq: this.lastSeq }));
      } else if (frame.op === 'ready') {
        this.backoff = 500;
        if (frame.seq > this.lastSeq) this.lastSeq = frame.seq;
        this.onEvent({ op: 'status', status: 'online' });
      } else if (frame.op === 'resync') {
        this.lastSeq = frame.seq;
        this.onEvent({ op: 'resync' });
      } else if (frame.op === 'event') {
        if (frame.seq > this.lastSeq) this.lastSeq = frame.seq;
        this.onEvent(frame);
      } else if (frame.op === 'typing' || frame.op === 'presence') {
        this.onEvent(frame);
      }
    };
    ws.onclose = (c) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (c.code === 4010) {
        if (this.api.onSignedOut) this.api.onSignedOut(new ApiError(401, 'signed_out', c.reason));
        return;
      }
      this.onEvent({ op: 'status', status: 'offline', message: c.reason });
      this.retry();
    };
  }

  retry() {
    if (this.closed) return;
    const wait = this.backoff;
    this.backoff = Math.min(this.backoff * 2, 15000);
    setTimeout(() => this.open(), wait);
  }

  send(frame) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
  }

  close() {
    this.closed = true;
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close(1000);
    }
  }
}
